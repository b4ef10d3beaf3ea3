//! Strict JSON (RFC 8259) lexing for the one-pass decoder: whitespace,
//! strings (escapes and UTF-8 checked), numbers by the grammar, literals, and
//! skipping any value, nested ones included, without building it.
//!
//! Every function takes the message and the index where its token starts and
//! returns the index after it, or a [`SyntaxError`] naming the byte. Nothing
//! here allocates except [`unescape_into`], which appends to a caller's buffer.

use std::fmt;

/// Deepest nesting accepted (the record's own object counts as one level);
/// the stream schemas are flat.
pub const MAX_DEPTH: usize = 64;

/// Where and why a message is not a single JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset of the problem in the message.
    pub offset: usize,
    pub message: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.message)
    }
}

pub type Result<T> = std::result::Result<T, SyntaxError>;

pub fn err<T>(offset: usize, message: &'static str) -> Result<T> {
    Err(SyntaxError { offset, message })
}

pub const TRUNCATED: &str = "message ends inside the JSON object (truncated)";

/// The byte at `i`, or the truncation error.
#[inline]
pub fn peek(bytes: &[u8], i: usize) -> Result<u8> {
    match bytes.get(i) {
        Some(&c) => Ok(c),
        None => err(i, TRUNCATED),
    }
}

#[inline]
pub fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(i) {
        i += 1;
    }
    i
}

/// A string token: its raw contents are `bytes[start + 1..end - 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Str {
    pub end: usize,
    /// Contains a backslash escape, so the raw contents are not the value.
    pub escaped: bool,
}

/// Bytes that end the fast scan of a string's body: `"`, `\`, control
/// characters, and non-ASCII bytes (checked as UTF-8 once the string ends).
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i < 0x20 || i >= 0x80 || i == b'"' as usize || i == b'\\' as usize;
        i += 1;
    }
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each of `w`'s bytes that would stop [`string`]'s scan
/// (`"`, `\`, below 0x20, or non-ASCII). Bits above the lowest may be
/// false alarms (borrows carry upwards); the lowest is exact.
#[inline(always)]
fn stops(w: u64) -> u64 {
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero_byte(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    (quote | backslash | control | w) & HIGHS
}

/// `bytes[start]` is `"`: checks the string (escapes, control characters,
/// UTF-8) and returns where it ends.
#[inline(always)]
pub fn string(bytes: &[u8], start: usize) -> Result<Str> {
    let mut i = start + 1;
    let mut escaped = false;
    let mut ascii = true;
    loop {
        // Eight bytes at a time, jumping to the first one that matters.
        loop {
            let Some(chunk) = bytes.get(i..i + 8) else {
                while i < bytes.len() && !STRING_STOP[bytes[i] as usize] {
                    i += 1;
                }
                break;
            };
            let mask = stops(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
            if mask != 0 {
                i += (mask.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match bytes.get(i) {
            None => return err(i, "message ends inside a string (truncated)"),
            Some(b'"') => {
                if !ascii && let Err(e) = std::str::from_utf8(&bytes[start + 1..i]) {
                    return err(start + 1 + e.valid_up_to(), "invalid UTF-8 in a string");
                }
                return Ok(Str {
                    end: i + 1,
                    escaped,
                });
            }
            Some(b'\\') => {
                escaped = true;
                i = escape(bytes, i)?;
            }
            Some(&c) if c >= 0x80 => {
                ascii = false;
                i += 1;
            }
            Some(_) => return err(i, "unescaped control character in a string"),
        }
    }
}

/// `bytes[i]` is `\`: checks one escape (a `\u` surrogate pair as one) and
/// returns the index after it.
fn escape(bytes: &[u8], i: usize) -> Result<usize> {
    match bytes.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
        Some(b'u') => {
            let Some(unit) = hex4(bytes, i + 2) else {
                return err(i, "invalid \\u escape in a string");
            };
            match unit {
                0xD800..=0xDBFF => {
                    let low = match bytes.get(i + 6..i + 8) {
                        Some(b"\\u") => hex4(bytes, i + 8),
                        _ => None,
                    };
                    if low.is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) {
                        Ok(i + 12)
                    } else {
                        err(i, "unpaired UTF-16 surrogate in a \\u escape")
                    }
                }
                0xDC00..=0xDFFF => err(i, "unpaired UTF-16 surrogate in a \\u escape"),
                _ => Ok(i + 6),
            }
        }
        _ => err(i, "invalid escape in a string"),
    }
}

fn hex4(bytes: &[u8], i: usize) -> Option<u16> {
    let hex = bytes.get(i..i + 4)?;
    hex.iter().try_fold(0u16, |n, &h| {
        let d = (h as char).to_digit(16)?;
        Some(n << 4 | d as u16)
    })
}

/// Appends the value of a string checked by [`string`], given its raw
/// contents (between the quotes), to `out`.
pub fn unescape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let run = raw[i..]
            .iter()
            .position(|&b| b == b'\\')
            .map_or(raw.len(), |p| i + p);
        out.extend_from_slice(&raw[i..run]);
        i = run;
        if i == raw.len() {
            break;
        }
        let simple = match raw.get(i + 1) {
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0C),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            Some(b'u') => None,
            Some(&c) => Some(c),
            None => Some(b'\\'),
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let unit = u32::from(hex4(raw, i + 2).unwrap_or(0xFFFD));
        let (code, len) = if (0xD800..=0xDBFF).contains(&unit) {
            let low = u32::from(hex4(raw, i + 8).unwrap_or(0xDC00));
            (
                0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF),
                12,
            )
        } else {
            (unit, 6)
        };
        let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        i += len;
    }
}

/// A number token, read by the grammar, with what the typed parsers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Num {
    pub end: usize,
    pub negative: bool,
    /// The integer and fraction digits as one integer, when there are at most 19.
    pub mantissa: u64,
    /// More than 19 digits: `mantissa` is not the value's digits.
    pub long: bool,
    /// Digits after the `.`.
    pub fraction_digits: i32,
    /// The exponent after `e`, saturated to ±99,999.
    pub exponent: i32,
    /// Neither a fraction nor an exponent.
    pub integer: bool,
}

impl Num {
    /// The exact integer, when the token is one that fits `i64`.
    #[inline]
    pub fn as_i64(&self) -> Option<i64> {
        if !self.integer || self.long {
            return None;
        }
        if self.negative {
            0i64.checked_sub_unsigned(self.mantissa)
        } else {
            i64::try_from(self.mantissa).ok()
        }
    }

    /// The nearest `f64`, as `str::parse` (and arrow-json's parser) round it.
    #[inline]
    pub fn as_f64(&self, text: &[u8]) -> f64 {
        const EXACT: u64 = 1 << 53;
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let e = self.exponent - self.fraction_digits;
        // Clinger's fast path: an exact mantissa times or over an exact power
        // of ten rounds once, so it is the correctly rounded value.
        if !self.long && self.mantissa <= EXACT && (-22..=22).contains(&e) {
            let m = self.mantissa as f64;
            let v = if e >= 0 {
                m * POW10[e as usize]
            } else {
                m / POW10[(-e) as usize]
            };
            return if self.negative { -v } else { v };
        }
        std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

/// `bytes[start]` is `-` or a digit; reads a number by the JSON grammar.
// Inlined: returned through memory, the token cost a store-forwarding stall
// per number (16 % of the field decoding time in a profile).
#[inline(always)]
pub fn number(bytes: &[u8], start: usize) -> Result<Num> {
    let mut i = start;
    let negative = bytes[i] == b'-';
    if negative {
        i += 1;
    }
    let mut mantissa = 0u64;
    let mut digits = 0u32;
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while let Some(&d @ b'0'..=b'9') = bytes.get(i) {
                if digits < 19 {
                    mantissa = mantissa * 10 + u64::from(d - b'0');
                }
                digits += 1;
                i += 1;
            }
        }
        _ => return err(i, "invalid number"),
    }
    let mut fraction_digits = 0;
    let mut integer = true;
    if bytes.get(i) == Some(&b'.') {
        integer = false;
        let first = i + 1;
        i = first;
        while let Some(&d @ b'0'..=b'9') = bytes.get(i) {
            if digits < 19 {
                mantissa = mantissa * 10 + u64::from(d - b'0');
            }
            digits += 1;
            i += 1;
        }
        if i == first {
            return err(first - 1, "invalid number: no digits after '.'");
        }
        fraction_digits = (i - first) as i32;
    }
    let mut exponent = 0i32;
    if let Some(b'e' | b'E') = bytes.get(i) {
        integer = false;
        i += 1;
        let minus = bytes.get(i) == Some(&b'-');
        if let Some(b'+' | b'-') = bytes.get(i) {
            i += 1;
        }
        let first = i;
        while let Some(&d @ b'0'..=b'9') = bytes.get(i) {
            exponent = (exponent * 10 + i32::from(d - b'0')).min(99_999);
            i += 1;
        }
        if i == first {
            return err(i, "invalid number: no digits in the exponent");
        }
        if minus {
            exponent = -exponent;
        }
    }
    Ok(Num {
        end: i,
        negative,
        mantissa,
        long: digits > 19,
        fraction_digits: fraction_digits.min(99_999),
        exponent,
        integer,
    })
}

/// `bytes[i]` starts `true`, `false` or `null` (by its first letter); returns
/// the index after the literal.
#[inline]
pub fn literal(bytes: &[u8], i: usize) -> Result<usize> {
    let word: &[u8] = match bytes[i] {
        b't' => b"true",
        b'f' => b"false",
        _ => b"null",
    };
    if bytes.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        err(i, "invalid literal (expected true, false or null)")
    }
}

/// Checks the value starting at `i` (after whitespace), nested at `depth`
/// (the record's object is depth 1), and returns the index after it.
pub fn skip_value(bytes: &[u8], i: usize, depth: usize) -> Result<usize> {
    match peek(bytes, i)? {
        b'"' => Ok(string(bytes, i)?.end),
        b'-' | b'0'..=b'9' => Ok(number(bytes, i)?.end),
        b't' | b'f' | b'n' => literal(bytes, i),
        open @ (b'{' | b'[') => {
            if depth >= MAX_DEPTH {
                return err(i, "nested deeper than 64 levels");
            }
            if open == b'{' {
                skip_object(bytes, i, depth + 1)
            } else {
                skip_list(bytes, i, depth + 1)
            }
        }
        b',' => err(i, "unexpected ',' where a value belongs"),
        _ => err(i, "expected a value"),
    }
}

fn skip_object(bytes: &[u8], start: usize, depth: usize) -> Result<usize> {
    let mut i = skip_ws(bytes, start + 1);
    if peek(bytes, i)? == b'}' {
        return Ok(i + 1);
    }
    let mut first = true;
    loop {
        if peek(bytes, i)? != b'"' {
            return if first {
                err(i, "expected a field name or '}'")
            } else {
                err(i, "expected a field name after ','")
            };
        }
        i = skip_ws(bytes, string(bytes, i)?.end);
        if peek(bytes, i)? != b':' {
            return err(i, "expected ':' after a field name");
        }
        i = skip_ws(bytes, i + 1);
        i = skip_ws(bytes, skip_value(bytes, i, depth)?);
        match peek(bytes, i)? {
            b',' => i = skip_ws(bytes, i + 1),
            b'}' => return Ok(i + 1),
            _ => return err(i, "expected ',' or '}' after a value"),
        }
        first = false;
    }
}

fn skip_list(bytes: &[u8], start: usize, depth: usize) -> Result<usize> {
    let mut i = skip_ws(bytes, start + 1);
    if peek(bytes, i)? == b']' {
        return Ok(i + 1);
    }
    loop {
        i = skip_ws(bytes, skip_value(bytes, i, depth)?);
        match peek(bytes, i)? {
            b',' => i = skip_ws(bytes, i + 1),
            b']' => return Ok(i + 1),
            _ => return err(i, "expected ',' or ']' after a value"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_grammar_and_round_like_std() {
        for text in [
            "0",
            "-0",
            "1",
            "-1",
            "12.5",
            "1e3",
            "1E+3",
            "1e-3",
            "-0.000123",
            "123456789012345678",
            "1234567890123456789",
            "12345678901234567890",
            "9007199254740993",
            "0.1",
            "1e22",
            "1e23",
            "1e-22",
            "1e-23",
            "1e400",
            "-1e400",
            "1e-400",
            "4.9e-324",
            "0.30000000000000004",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
        ] {
            let n = number(text.as_bytes(), 0).unwrap();
            assert_eq!(n.end, text.len(), "{text}");
            let expected: f64 = text.parse().unwrap();
            assert_eq!(
                n.as_f64(text.as_bytes()).to_bits(),
                expected.to_bits(),
                "{text}"
            );
            assert_eq!(n.as_i64(), text.parse::<i64>().ok(), "{text}");
        }
        for bad in ["-", "01x", "1.", "1.e3", "1e", "1e+", "-a"] {
            let r = number(bad.as_bytes(), 0);
            assert!(
                r.is_err() || r.unwrap().end < bad.len(),
                "{bad} read as a whole number"
            );
        }
    }

    #[test]
    fn strings_check_escapes_surrogates_and_utf8() {
        let ok: [&[u8]; 6] = [
            br#""plain""#,
            br#""a\"b\\c\/d\b\f\n\r\t""#,
            br#""\u00e9\uD83D\uDE00""#,
            "\"caf\u{e9} \u{1F600} long enough to take the eight-byte path\"".as_bytes(),
            br#""""#,
            b"\"\x7f\"",
        ];
        for s in ok {
            assert_eq!(string(s, 0).map(|s| s.end), Ok(s.len()), "{s:?}");
        }
        for (s, why) in [
            (&br#""\x""#[..], "invalid escape"),
            (br#""\u12G4""#, "\\u escape"),
            (br#""\uD83D""#, "unpaired"),
            (br#""\uD83Dx\uDE00""#, "unpaired"),
            (br#""\uDE00\uD83D""#, "unpaired"),
            (br#""\uD83D\u0041""#, "unpaired"),
            (b"\"bad \xff byte\"", "UTF-8"),
            (b"\"cut \xe2\x82\"", "UTF-8"),
            (b"\"line\nbreak\"", "control character"),
            (b"\"open", "truncated"),
            (b"\"0123456789abcdef", "truncated"),
        ] {
            let e = string(s, 0).expect_err(&String::from_utf8_lossy(s));
            assert!(e.message.contains(why), "{s:?}: {e}");
        }
        assert_eq!(
            string(b"\"ok \xc3\xa9 then \xff\"", 0).unwrap_err().offset,
            12
        );
    }

    /// The same rules one byte at a time, without the word scan.
    fn string_bytewise(bytes: &[u8], start: usize) -> Result<Str> {
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            match bytes.get(i) {
                None => return err(i, "message ends inside a string (truncated)"),
                Some(b'"') => {
                    if let Err(e) = std::str::from_utf8(&bytes[start + 1..i]) {
                        return err(start + 1 + e.valid_up_to(), "invalid UTF-8 in a string");
                    }
                    return Ok(Str {
                        end: i + 1,
                        escaped,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    i = escape(bytes, i)?;
                }
                Some(&c) if c < 0x20 => {
                    return err(i, "unescaped control character in a string");
                }
                Some(_) => i += 1,
            }
        }
    }

    #[test]
    fn the_word_scan_agrees_with_a_byte_scan_at_every_position() {
        let specials: [&[u8]; 10] = [
            b"\"",
            b"\\n",
            b"\\u00e9",
            b"\x01",
            b"\x1f",
            b"\x7f",
            b"\xc3\xa9",
            b"\xff",
            b"\xe2\x82",
            b" ",
        ];
        for len in 0..24 {
            for at in 0..=len {
                for special in specials {
                    for tail in [&b"\""[..], b"", b"\"}"] {
                        let mut s = b"\"".to_vec();
                        s.extend(std::iter::repeat_n(b'a', at));
                        s.extend_from_slice(special);
                        s.extend(std::iter::repeat_n(b'b', len - at));
                        s.extend_from_slice(tail);
                        assert_eq!(string(&s, 0), string_bytewise(&s, 0), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn unescaping_decodes_every_escape() {
        let raw = br#"a\"b\\c\/d\b\f\n\r\t\u00e9\uD83D\uDE00\u0000z"#;
        let mut out = Vec::new();
        unescape_into(raw, &mut out);
        assert_eq!(
            out,
            "a\"b\\c/d\u{8}\u{c}\n\r\t\u{e9}\u{1F600}\u{0}z".as_bytes()
        );
    }

    #[test]
    fn values_nest_only_so_deep() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(skip_value(deep(63).as_bytes(), 0, 1).is_ok());
        let e = skip_value(deep(64).as_bytes(), 0, 1).unwrap_err();
        assert!(e.message.contains("deeper than 64"), "{e}");
    }
}
