//! Terminal output helpers: thousands separators and a status line that
//! rewrites itself on a terminal and prints plain lines elsewhere.

use std::io::{IsTerminal, Write};

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS` UTC, or `-` before the first event.
pub fn event_time(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) if ms > 0 => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => "-".to_owned(),
    }
}

/// A progress line on stderr: rewritten in place on a terminal, otherwise
/// printed as a new line every `every` updates so logs stay readable.
pub struct StatusLine {
    terminal: bool,
    every: u64,
    updates: u64,
}

impl StatusLine {
    pub fn new(every: u64) -> StatusLine {
        StatusLine {
            terminal: std::io::stderr().is_terminal(),
            every: every.max(1),
            updates: 0,
        }
    }

    pub fn update(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{text}");
        } else if self.updates.is_multiple_of(self.every) {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
        self.updates += 1;
    }

    /// Ends the line on a terminal so that later output starts on a new one.
    pub fn finish(&mut self) {
        if self.terminal && self.updates > 0 {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
