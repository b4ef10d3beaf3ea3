use std::fmt;

use datafusion::error::DataFusionError;

/// Where in a view's SQL text something is (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

fn at(position: &Option<Position>) -> String {
    position.map(|p| format!(" (at {p})")).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The view uses SQL a continuous view cannot run.
    #[error(
        "view `{view}`: {construct} is not supported in a continuous view{}: {hint}",
        at(position)
    )]
    Unsupported {
        view: String,
        construct: String,
        position: Option<Position>,
        hint: String,
    },
    /// The SQL does not plan: unknown table or column, bad syntax, type errors.
    #[error("view `{view}`: {message}")]
    Plan { view: String, message: String },
    /// A view or table name is taken or unknown.
    #[error("{0}")]
    Name(String),
    /// A view option in the leading comment is malformed.
    #[error("view `{view}`: option `{option}`: {message}")]
    Option {
        view: String,
        option: String,
        message: String,
    },
    /// A reference table could not be read.
    #[error("reference table `{table}`: {message}")]
    Reference { table: String, message: String },
    /// A snapshot does not fit the engine it is restored into.
    #[error("restoring state: {0}")]
    Restore(String),
    /// A sink refused rows.
    #[error("sink: {0}")]
    Sink(String),
    /// DataFusion failed while running a view.
    #[error("view `{view}`: {source}")]
    Run {
        view: String,
        #[source]
        source: DataFusionError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// DataFusion's error text without its "Error during planning:" style prefixes
/// and backtraces, for messages shown to people writing SQL.
pub(crate) fn plan_message(e: &DataFusionError) -> String {
    let e = e.find_root();
    let text = match e {
        DataFusionError::Plan(m)
        | DataFusionError::SQL(_, Some(m))
        | DataFusionError::NotImplemented(m)
        | DataFusionError::Execution(m) => m.clone(),
        DataFusionError::SchemaError(s, _) => s.to_string(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().trim().to_owned()
}

/// The first place the keyword (a sequence of words) occurs in the SQL, outside
/// comments and string literals, case-insensitively.
pub(crate) fn find_keyword(sql: &str, keyword: &str) -> Option<Position> {
    let words: Vec<String> = keyword
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    // Blank out comments and string literals, keeping offsets.
    let mut clean = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            if c == '\'' {
                in_string = false;
            }
            clean.push(if c == '\n' { '\n' } else { ' ' });
            continue;
        }
        if c == '\'' {
            in_string = true;
            clean.push(' ');
        } else if c == '-' && chars.peek() == Some(&'-') {
            clean.push(' ');
            for c in chars.by_ref() {
                if c == '\n' {
                    clean.push('\n');
                    break;
                }
                clean.push(' ');
            }
        } else {
            clean.push(c.to_ascii_uppercase());
        }
    }
    let bytes = clean.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if (i == 0 || !is_word(bytes[i - 1])) && clean[i..].starts_with(words[0].as_str()) {
            let mut j = i;
            let mut ok = true;
            for (n, word) in words.iter().enumerate() {
                if n > 0 {
                    let start = j;
                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j == start {
                        ok = false;
                        break;
                    }
                }
                if !clean[j..].starts_with(word.as_str()) {
                    ok = false;
                    break;
                }
                j += word.len();
            }
            if ok && (j >= bytes.len() || !is_word(bytes[j])) {
                let line = clean[..i].matches('\n').count() + 1;
                let column = i - clean[..i].rfind('\n').map_or(0, |n| n + 1) + 1;
                return Some(Position { line, column });
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_positions_skip_comments_and_strings() {
        let sql = "-- order by in a comment\nSELECT 'order by' FROM t\n  ORDER   BY x";
        assert_eq!(
            find_keyword(sql, "ORDER BY"),
            Some(Position { line: 3, column: 3 })
        );
        assert_eq!(find_keyword(sql, "LIMIT"), None);
        assert_eq!(find_keyword("select a from b_order by", "ORDER BY"), None);
    }
}
