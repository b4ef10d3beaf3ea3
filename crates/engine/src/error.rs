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

/// What the caller of a failed engine call can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The input is wrong and nothing was changed: fix the SQL, the view file,
    /// the reference table, the snapshot or the data, and try again. An HTTP
    /// layer answers 4xx.
    BadInput,
    /// A bug in kpiflow or DataFusion. The engine stops taking input (see
    /// [`Error::Stopped`]); restore from the last checkpoint. An HTTP layer
    /// answers 5xx and logs the details.
    Internal,
}

/// The engine's errors. Sinks and I/O are not the engine's: the pipeline
/// runner hands its output to them, so their failures are the runner's.
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
    /// A view or table name is malformed, taken, or unknown.
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
    /// A snapshot is damaged, of another format version, or does not fit the
    /// engine's views. The engine is unchanged.
    #[error("restoring state: {0}")]
    Restore(String),
    /// A batch does not fit its stream (wrong columns), or a view's per-row SQL
    /// failed on its rows (a cast or a division by zero). The batch was applied
    /// to no view.
    #[error(
        "view `{view}`: its SQL failed on the batch's rows, which were applied to no view: {source}"
    )]
    Input {
        view: String,
        #[source]
        source: DataFusionError,
    },
    /// A batch's rows do not have the schema of their stream.
    #[error("a `{stream}` batch does not have the stream's columns: {message}")]
    Batch { stream: String, message: String },
    /// The batch formulation ([`crate::batch`], what `verify` runs) cannot
    /// recompute the view: a construct its rewrite does not handle (named),
    /// tables that do not fit the SQL, late rows that lack a column the
    /// aggregation reads or match no input row, or the query failed on the
    /// rows. Nothing was changed.
    #[error("view `{view}`: recomputing it as one batch query: {message}")]
    Recompute { view: String, message: String },
    /// Something that cannot fail did: a bug. The engine stops taking input.
    #[error("internal error in {context}: {source}")]
    Internal {
        context: String,
        #[source]
        source: DataFusionError,
    },
    /// An earlier internal error stopped the engine; it takes no more input
    /// and refuses to snapshot a state that may be half-applied.
    #[error("the engine stopped after an internal error ({0}); restart from the last checkpoint")]
    Stopped(String),
}

impl Error {
    /// What the caller can do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Unsupported { .. }
            | Error::Plan { .. }
            | Error::Name(_)
            | Error::Option { .. }
            | Error::Reference { .. }
            | Error::Restore(_)
            | Error::Input { .. }
            | Error::Batch { .. }
            | Error::Recompute { .. } => ErrorClass::BadInput,
            Error::Internal { .. } | Error::Stopped(_) => ErrorClass::Internal,
        }
    }

    pub(crate) fn internal(context: impl Into<String>, source: DataFusionError) -> Error {
        Error::Internal {
            context: context.into(),
            source,
        }
    }
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
