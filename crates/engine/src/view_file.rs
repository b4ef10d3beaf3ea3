//! View files (`sql/<name>.sql`): a leading `--` comment describes the view,
//! `-- @name value` lines set its options, the rest is one SELECT.

use crate::error::{Error, Result};
use crate::view::{LatePolicy, ViewOptions};

/// Longest allowed out-of-orderness: a watermark held back further than
/// this would keep a year of windows open.
pub const MAX_OUT_OF_ORDERNESS_MS: i64 = 366 * 86_400_000;

/// A view file: leading `--` comment lines describe it; lines `-- @name value`
/// set options (`out_of_orderness 10s`, `late table|drop`); the rest is the SELECT.
pub fn parse_view_file(name: &str, text: &str) -> Result<(String, ViewOptions, String)> {
    let mut description = Vec::new();
    let mut options = ViewOptions::default();
    let mut body = Vec::new();
    let mut in_header = true;
    for line in text.lines() {
        let trimmed = line.trim();
        if in_header && let Some(comment) = trimmed.strip_prefix("--") {
            let comment = comment.trim();
            if let Some(setting) = comment.strip_prefix('@') {
                let (key, value) = setting
                    .split_once(char::is_whitespace)
                    .unwrap_or((setting, ""));
                let value = value.trim();
                let bad = |message: String| Error::Option {
                    view: name.to_owned(),
                    option: key.to_owned(),
                    message,
                };
                match key {
                    "out_of_orderness" => {
                        let d = humantime::parse_duration(value).map_err(|e| {
                            bad(format!(
                                "`{value}` is not a duration ({e}); write e.g. 5s or 2min"
                            ))
                        })?;
                        let ms = i64::try_from(d.as_millis())
                            .ok()
                            .filter(|ms| *ms <= MAX_OUT_OF_ORDERNESS_MS)
                            .ok_or_else(|| {
                                bad(format!("`{value}` is longer than the maximum of 366 days"))
                            })?;
                        options.out_of_orderness_ms = Some(ms);
                    }
                    "late" => {
                        options.late = match value {
                            "table" => LatePolicy::Table,
                            "drop" => LatePolicy::Drop,
                            other => {
                                return Err(bad(format!("`{other}`: expected `table` or `drop`")));
                            }
                        }
                    }
                    other => {
                        return Err(bad(format!(
                            "unknown option `{other}`: expected out_of_orderness or late"
                        )));
                    }
                }
            } else {
                description.push(comment.to_owned());
            }
            continue;
        }
        if !trimmed.is_empty() {
            in_header = false;
        }
        if !in_header {
            body.push(line);
        }
    }
    let sql = body
        .join("\n")
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_owned();
    Ok((description.join(" ").trim().to_owned(), options, sql))
}
