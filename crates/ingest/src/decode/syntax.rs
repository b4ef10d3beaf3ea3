//! A strict JSON syntax check of one Kafka message, run before arrow-json.
//!
//! arrow-json's tape decoder treats commas inside objects and lists as
//! optional (`{"a":1,,}` and `{"a":1 "b":2}` decode without error) and reads
//! a stream of concatenated values, so a record cut short would swallow the
//! next message. Checking each message alone — exactly one JSON object, RFC
//! 8259 syntax — keeps one bad record from ever reaching the decoder and
//! costing a good one. It allocates nothing and reads each byte once.

use std::fmt;

/// Deepest nesting accepted; the stream schemas are flat.
const MAX_DEPTH: usize = 64;

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

fn err<T>(offset: usize, message: &'static str) -> Result<T, SyntaxError> {
    Err(SyntaxError { offset, message })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// After `{`: a field name or `}`.
    ObjectStart,
    /// After `,` in an object: a field name.
    Key,
    /// After a field name.
    Colon,
    /// After `:` or `,` in a list: a value.
    Value,
    /// After `[`: a value or `]`.
    ListStart,
    /// After a value: `,` or the container's end.
    AfterValue,
}

/// Bytes that end the fast scan of a string's body: `"`, `\` and control characters.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A top-level member's value, as [`check_object_members`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member<'a> {
    /// A string's raw contents between the quotes (escapes not decoded).
    String(&'a [u8]),
    /// A number; `integer` when it has no fraction or exponent.
    Number {
        integer: bool,
    },
    Bool,
    Null,
    /// An object or a list.
    Container,
}

/// Checks that `bytes` is exactly one JSON object, optionally surrounded by whitespace.
pub fn check_object(bytes: &[u8]) -> Result<(), SyntaxError> {
    check_object_members(bytes, |_, _| {})
}

/// [`check_object`], calling `visit` with each top-level member's raw name
/// (escapes not decoded) and value as they are read.
pub fn check_object_members<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(&'a [u8], Member<'a>),
) -> Result<(), SyntaxError> {
    let mut key: &'a [u8] = &[];
    let mut i = skip_ws(bytes, 0);
    match bytes.get(i) {
        None => return err(i, "empty message, expected a JSON object"),
        Some(b'{') => {}
        Some(_) => return err(i, "expected a JSON object starting with '{'"),
    }
    // true = object, false = list
    let mut stack = [false; MAX_DEPTH];
    let mut depth = 0usize;
    let mut state = State::Value;
    loop {
        i = skip_ws(bytes, i);
        let Some(&c) = bytes.get(i) else {
            return err(i, "message ends inside the JSON object (truncated)");
        };
        match state {
            State::ObjectStart | State::Key => match c {
                b'"' => {
                    let start = i;
                    i = string(bytes, i)?;
                    if depth == 1 {
                        key = &bytes[start + 1..i - 1];
                    }
                    state = State::Colon;
                }
                b'}' if state == State::ObjectStart => {
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        return end(bytes, i);
                    }
                    state = State::AfterValue;
                }
                _ if state == State::Key => return err(i, "expected a field name after ','"),
                _ => return err(i, "expected a field name or '}'"),
            },
            State::Colon => {
                if c != b':' {
                    return err(i, "expected ':' after a field name");
                }
                i += 1;
                state = State::Value;
            }
            State::Value | State::ListStart => match c {
                b']' if state == State::ListStart => {
                    depth -= 1;
                    i += 1;
                    state = State::AfterValue;
                }
                b'{' | b'[' => {
                    if depth == 1 {
                        visit(key, Member::Container);
                    }
                    if depth == MAX_DEPTH {
                        return err(i, "nested deeper than 64 levels");
                    }
                    stack[depth] = c == b'{';
                    depth += 1;
                    i += 1;
                    state = if c == b'{' {
                        State::ObjectStart
                    } else {
                        State::ListStart
                    };
                }
                b'"' => {
                    let start = i;
                    i = string(bytes, i)?;
                    if depth == 1 {
                        visit(key, Member::String(&bytes[start + 1..i - 1]));
                    }
                    state = State::AfterValue;
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    i = number(bytes, i)?;
                    if depth == 1 {
                        let integer = !bytes[start..i]
                            .iter()
                            .any(|b| matches!(b, b'.' | b'e' | b'E'));
                        visit(key, Member::Number { integer });
                    }
                    state = State::AfterValue;
                }
                b't' | b'f' | b'n' => {
                    let (word, member): (&[u8], _) = match c {
                        b't' => (b"true", Member::Bool),
                        b'f' => (b"false", Member::Bool),
                        _ => (b"null", Member::Null),
                    };
                    i = literal(bytes, i, word, &mut state)?;
                    if depth == 1 {
                        visit(key, member);
                    }
                }
                b',' => return err(i, "unexpected ',' where a value belongs"),
                _ => return err(i, "expected a value"),
            },
            State::AfterValue => {
                let in_object = stack[depth - 1];
                match (in_object, c) {
                    (true, b',') => {
                        i += 1;
                        state = State::Key;
                    }
                    (false, b',') => {
                        i += 1;
                        state = State::Value;
                    }
                    (true, b'}') | (false, b']') => {
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            return end(bytes, i);
                        }
                    }
                    (true, _) => return err(i, "expected ',' or '}' after a value"),
                    (false, _) => return err(i, "expected ',' or ']' after a value"),
                }
            }
        }
    }
}

fn end(bytes: &[u8], i: usize) -> Result<(), SyntaxError> {
    let i = skip_ws(bytes, i);
    if i == bytes.len() {
        Ok(())
    } else {
        err(i, "unexpected data after the JSON object")
    }
}

#[inline]
fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(i) {
        i += 1;
    }
    i
}

/// `bytes[i]` is `"`; returns the index after the closing quote.
#[inline]
fn string(bytes: &[u8], start: usize) -> Result<usize, SyntaxError> {
    let mut i = start + 1;
    loop {
        while i < bytes.len() && !STRING_STOP[bytes[i] as usize] {
            i += 1;
        }
        match bytes.get(i) {
            None => return err(i, "message ends inside a string (truncated)"),
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match bytes.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let hex = bytes.get(i + 2..i + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return err(i, "invalid \\u escape in a string");
                    }
                    i += 6;
                }
                _ => return err(i, "invalid escape in a string"),
            },
            Some(_) => return err(i, "unescaped control character in a string"),
        }
    }
}

/// `bytes[i]` is `-` or a digit; returns the index after the number.
fn number(bytes: &[u8], start: usize) -> Result<usize, SyntaxError> {
    let digits = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = start;
    if bytes[i] == b'-' {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i),
        _ => return err(i, "invalid number"),
    }
    if bytes.get(i) == Some(&b'.') {
        let after = digits(i + 1);
        if after == i + 1 {
            return err(i, "invalid number: no digits after '.'");
        }
        i = after;
    }
    if let Some(b'e' | b'E') = bytes.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = bytes.get(i) {
            i += 1;
        }
        let after = digits(i);
        if after == i {
            return err(i, "invalid number: no digits in the exponent");
        }
        i = after;
    }
    Ok(i)
}

fn literal(
    bytes: &[u8],
    i: usize,
    word: &'static [u8],
    state: &mut State,
) -> Result<usize, SyntaxError> {
    if bytes.get(i..i + word.len()) == Some(word) {
        *state = State::AfterValue;
        Ok(i + word.len())
    } else {
        err(i, "invalid literal (expected true, false or null)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_objects() {
        for ok in [
            r#"{}"#,
            r#" {"a":1} "#,
            r#"{"a":-1.5e+3,"b":"x\"y\\\u00e9","c":[1,[2,{}],[]],"d":{"e":null},"f":true,"g":false}"#,
            "{\"a\":\"caf\u{e9}\"}\n",
            r#"{"a":0,"b":0.0,"c":1E9}"#,
        ] {
            assert_eq!(check_object(ok.as_bytes()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_what_arrow_json_would_accept_or_misread() {
        for (bad, why) in [
            (r#"{"a":1,,"b":2}"#, "field name after ','"),
            (r#"{"a":1,}"#, "field name after ','"),
            (r#"{,"a":1}"#, "field name or '}'"),
            (r#"{"a":1 "b":2}"#, "expected ',' or '}'"),
            (r#"{"a":[1,,2]}"#, "where a value belongs"),
            (r#"{"a":[1 2]}"#, "expected ',' or ']'"),
            (r#"{"a":1}{"a":2}"#, "after the JSON object"),
            (r#"{"a":1} trailing}"#, "after the JSON object"),
            (r#"{"a":"tru"#, "truncated"),
            (r#"{"a":1"#, "truncated"),
            (r#"{"a""#, "truncated"),
            ("", "empty"),
            ("[1]", "JSON object"),
            ("42", "JSON object"),
            (r#"{"a":01}"#, "expected ',' or '}'"),
            (r#"{"a":1.}"#, "after '.'"),
            (r#"{"a":1e}"#, "exponent"),
            (r#"{"a":tru}"#, "literal"),
            (r#"{"a":"\x"}"#, "invalid escape"),
            (r#"{"a":"\u12G4"}"#, "\\u escape"),
            ("{\"a\":\"line\nbreak\"}", "control character"),
            (r#"{'a':1}"#, "field name"),
            (r#"{"a"=1}"#, "':'"),
        ] {
            let e = check_object(bad.as_bytes()).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn every_proper_prefix_of_an_object_is_rejected() {
        let json = br#"{"event_time":"2026-11-11T01:30:00.000Z","sku":"SKU-KT-01","quantity":2,"x":[1,{"y":null}]}"#;
        for end in 0..json.len() {
            assert!(
                check_object(&json[..end]).is_err(),
                "{}",
                String::from_utf8_lossy(&json[..end])
            );
        }
        assert!(check_object(json).is_ok());
    }
}
