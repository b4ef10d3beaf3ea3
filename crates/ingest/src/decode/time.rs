//! Event-time text → epoch milliseconds, as arrow-json reads a
//! `TIMESTAMP(ms, UTC)` field: arrow-cast's `string_to_datetime` in UTC,
//! fractions truncated to the millisecond.
//!
//! The common RFC 3339 shapes (`2026-11-11T10:00:00Z`, with a fraction of up
//! to nine digits, a `±HH:MM` offset) are computed from their digits; anything
//! else goes to arrow-cast itself, so the accepted set is arrow-json's.

use chrono::Utc;

/// Parses event times, remembering the last date seen: consecutive records
/// mostly share it, and its day number costs several divisions.
#[derive(Debug, Clone, Default)]
pub struct TimeParser {
    last_date: Option<([u8; 10], i64)>,
}

impl TimeParser {
    /// Epoch milliseconds of `text`, or `None` when it is not a time.
    #[inline]
    pub fn parse_ms(&mut self, text: &[u8]) -> Option<i64> {
        self.rfc3339_ms(text).or_else(|| {
            let text = std::str::from_utf8(text).ok()?;
            arrow_cast::parse::string_to_datetime(&Utc, text)
                .ok()
                .map(|t| t.timestamp_millis())
        })
    }

    /// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)` with every field in range;
    /// `None` for anything else (which may still be a time arrow-cast accepts).
    #[inline]
    fn rfc3339_ms(&mut self, t: &[u8]) -> Option<i64> {
        if t.len() < 20 || !matches!(t[10], b'T' | b't') || t[13] != b':' || t[16] != b':' {
            return None;
        }
        let date: [u8; 10] = t[..10].try_into().expect("10 bytes");
        let days = match self.last_date {
            Some((last, days)) if last == date => days,
            _ => {
                let days = days_of(&date)?;
                self.last_date = Some((date, days));
                days
            }
        };
        let (hour, minute, second) = (two(t, 11)?, two(t, 14)?, two(t, 17)?);
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0;
        if t[i] == b'.' {
            let first = i + 1;
            i = first;
            while i < t.len() && t[i].is_ascii_digit() {
                if i - first < 3 {
                    millis = millis * 10 + i64::from(t[i] - b'0');
                }
                i += 1;
            }
            let digits = i - first;
            if !(1..=9).contains(&digits) {
                return None;
            }
            for _ in digits..3 {
                millis *= 10;
            }
        }
        let offset_minutes = match &t[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (two(t, i + 1)?, two(t, i + 4)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let minutes = h * 60 + m;
                if *sign == b'-' { -minutes } else { minutes }
            }
            _ => return None,
        };
        let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
        Some(seconds * 1_000 + millis)
    }
}

/// The two digits at `t[i..i + 2]` as a number.
#[inline(always)]
fn two(t: &[u8], i: usize) -> Option<i64> {
    let (a, b) = (t[i].wrapping_sub(b'0'), t[i + 1].wrapping_sub(b'0'));
    (a < 10 && b < 10).then(|| i64::from(a * 10 + b))
}

/// Days since 1970-01-01 of a valid `YYYY-MM-DD`.
fn days_of(date: &[u8; 10]) -> Option<i64> {
    if date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    let year = two(date, 0)? * 100 + two(date, 2)?;
    let (month, day) = (two(date, 5)?, two(date, 8)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow(text: &str) -> Option<i64> {
        arrow_cast::parse::string_to_datetime(&Utc, text)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    #[test]
    fn the_fast_path_agrees_with_arrow_cast() {
        for text in [
            "2026-11-11T10:00:00Z",
            "2026-11-11T10:00:00.1Z",
            "2026-11-11T10:00:00.12Z",
            "2026-11-11T10:00:00.123Z",
            "2026-11-11T10:00:00.123456789Z",
            "2026-11-11t10:00:00z",
            "2026-11-11T10:00:00+08:00",
            "2026-11-11T10:00:00.5-05:30",
            "1969-12-31T23:59:59.999Z",
            "1900-02-28T00:00:00Z",
            "2000-02-29T12:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999+23:59",
        ] {
            let mut parser = TimeParser::default();
            assert_eq!(parser.rfc3339_ms(text.as_bytes()), arrow(text), "{text}");
            assert!(parser.rfc3339_ms(text.as_bytes()).is_some(), "{text}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_arrow_cast() {
        for text in [
            "2026-11-11 10:00:00",
            "2026-11-11T10:00:00",
            "2026-11-11",
            "2026-11-11T10:00:00.1234567891Z",
            "2026-11-11T10:00:00+0800",
            "2026-02-29T10:00:00Z",
            "2026-11-11T10:00:60Z",
            "2026-13-45T25:61:00Z",
            "yesterday",
            "",
        ] {
            let mut parser = TimeParser::default();
            assert_eq!(parser.rfc3339_ms(text.as_bytes()), None, "{text}");
            assert_eq!(parser.parse_ms(text.as_bytes()), arrow(text), "{text}");
        }
        let mut parser = TimeParser::default();
        assert!(parser.parse_ms(b"2026-11-11 10:00:00").is_some());
        assert_eq!(parser.parse_ms(b"11/11/2026 10:00"), None);
    }

    #[test]
    fn the_remembered_date_is_only_reused_for_the_same_date() {
        let mut parser = TimeParser::default();
        for text in [
            "2026-11-11T10:00:00Z",
            "2026-11-11T23:59:59.999Z",
            "2026-11-12T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-12T00:00:00+01:00",
            "2024-02-29T00:00:00Z",
        ] {
            assert_eq!(parser.parse_ms(text.as_bytes()), arrow(text), "{text}");
        }
    }
}
