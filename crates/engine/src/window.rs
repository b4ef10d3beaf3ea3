//! Windows written in `GROUP BY`: `tumble(t, size)`, `hop(t, slide, size)`,
//! `session(t, gap)` and `date_bin(size, t [, origin])` as a tumbling window.
//!
//! The SQL functions exist so that DataFusion can plan a view; the engine
//! never evaluates them row by row. It recognises the call in the view's
//! `GROUP BY`, replaces it by the `window_start` and `window_end` group
//! columns and assigns rows to windows itself ([`WindowSpec`]).

use std::fmt;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Earliest event time the engine places in a window: 0001-01-01T00:00:00Z.
pub const MIN_EVENT_TIME_MS: i64 = -62_135_596_800_000;
/// Latest event time the engine places in a window: 9999-12-31T23:59:59.999Z.
/// With window lengths capped at [`MAX_WINDOW_MS`], no window arithmetic on
/// times in this range can overflow.
pub const MAX_EVENT_TIME_MS: i64 = 253_402_300_799_999;
/// Longest window, slide or session gap: 100 years of 365.25 days.
pub const MAX_WINDOW_MS: i64 = 3_155_760_000_000;

/// Whether the engine can place a time in windows.
pub(crate) fn in_time_range(t: i64) -> bool {
    (MIN_EVENT_TIME_MS..=MAX_EVENT_TIME_MS).contains(&t)
}

/// How a view's rows are grouped in time. All durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows `[origin + k·size, origin + (k+1)·size)`.
    Tumble { size: i64, origin: i64 },
    /// Windows of `size` starting every `slide`; kept as panes of one slide.
    Hop { slide: i64, size: i64 },
    /// Per key, events less than `gap` apart share a window
    /// `[first event, last event + gap)`.
    Session { gap: i64 },
}

impl WindowSpec {
    /// Pane length and windows per pane for the pane-based kinds.
    pub(crate) fn panes(self) -> Option<Panes> {
        match self {
            WindowSpec::Tumble { size, origin } => Some(Panes {
                pane: size,
                per_window: 1,
                origin,
            }),
            WindowSpec::Hop { slide, size } => Some(Panes {
                pane: slide,
                per_window: size / slide,
                origin: 0,
            }),
            WindowSpec::Session { .. } => None,
        }
    }

    /// The function name as written in SQL.
    pub fn function(self) -> &'static str {
        match self {
            WindowSpec::Tumble { .. } => "tumble",
            WindowSpec::Hop { .. } => "hop",
            WindowSpec::Session { .. } => "session",
        }
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WindowSpec::Tumble { size, .. } => write!(f, "tumble {}", human(size)),
            WindowSpec::Hop { slide, size } => {
                write!(f, "hop {} every {}", human(size), human(slide))
            }
            WindowSpec::Session { gap } => write!(f, "session gap {}", human(gap)),
        }
    }
}

/// `90000` → `90s`, `3600000` → `1h`: the largest unit that divides evenly.
fn human(ms: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
        (1, "ms"),
    ];
    for (unit, name) in UNITS {
        if ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// Windows made of equal panes: a window is `per_window` consecutive panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Panes {
    pub pane: i64,
    pub per_window: i64,
    pub origin: i64,
}

impl Panes {
    /// Start of the pane holding `t`.
    pub fn pane_of(self, t: i64) -> i64 {
        (t - self.origin).div_euclid(self.pane) * self.pane + self.origin
    }

    pub fn window_size(self) -> i64 {
        self.pane * self.per_window
    }

    /// Start of the first window containing the pane starting at `pane`.
    pub fn first_window_of(self, pane: i64) -> i64 {
        pane - (self.per_window - 1) * self.pane
    }

    /// End of the last window containing the pane: after it the pane is not needed.
    pub fn last_end_of(self, pane: i64) -> i64 {
        pane + self.window_size()
    }
}

/// Names of the functions marking the start and end columns of a window in a
/// rewritten plan; their argument is the event time.
pub(crate) const WINDOW_START_FN: &str = "kpiflow_window_start";
pub(crate) const WINDOW_END_FN: &str = "kpiflow_window_end";

/// The SQL functions: `tumble`, `hop`, `session`, and the internal end marker.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(WindowFn::new("tumble", 2)),
        ScalarUDF::from(WindowFn::new("hop", 3)),
        ScalarUDF::from(WindowFn::new("session", 2)),
        ScalarUDF::from(WindowFn::new(WINDOW_START_FN, 1)),
        ScalarUDF::from(WindowFn::new(WINDOW_END_FN, 1)),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowFn {
    name: &'static str,
    signature: Signature,
}

impl WindowFn {
    fn new(name: &'static str, args: usize) -> WindowFn {
        WindowFn {
            name,
            signature: Signature::any(args, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for WindowFn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match args.first() {
            // Window bounds are always milliseconds in UTC, whatever the time's unit.
            Some(DataType::Timestamp(_, _)) => Ok(DataType::Timestamp(
                TimeUnit::Millisecond,
                Some("UTC".into()),
            )),
            Some(other) => plan_err!(
                "{}(): the first argument must be a timestamp column such as event_time, got {other}",
                self.name
            ),
            None => plan_err!("{}(): missing the time argument", self.name),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        plan_err!(
            "{}() assigns windows in the GROUP BY of a continuous view; it cannot be evaluated elsewhere",
            self.name
        )
    }
}

/// A window call found in a `GROUP BY`, with its time argument.
pub(crate) struct WindowCall {
    pub spec: WindowSpec,
    pub time_arg: Expr,
}

/// Recognises `tumble`, `hop`, `session` and `date_bin` calls. `Ok(None)` for
/// any other expression; an error names what is wrong with a window call.
pub(crate) fn window_call(expr: &Expr) -> Result<Option<WindowCall>, String> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        e => e,
    };
    let Expr::ScalarFunction(call) = expr else {
        return Ok(None);
    };
    let name = call.func.name();
    let args = &call.args;
    let spec = match name {
        "tumble" => {
            let size = interval_ms(name, "size", &args[1])?;
            WindowSpec::Tumble { size, origin: 0 }
        }
        "hop" => {
            let slide = interval_ms(name, "slide", &args[1])?;
            let size = interval_ms(name, "size", &args[2])?;
            if size % slide != 0 {
                return Err(format!(
                    "hop(): the size ({}) must be a whole multiple of the slide ({})",
                    human(size),
                    human(slide)
                ));
            }
            WindowSpec::Hop { slide, size }
        }
        "session" => WindowSpec::Session {
            gap: interval_ms(name, "gap", &args[1])?,
        },
        "date_bin" => {
            if args.len() < 2 {
                return Err("date_bin(): expected date_bin(INTERVAL, event_time)".into());
            }
            let size = interval_ms(name, "stride", &args[0])?;
            let origin = match args.get(2) {
                None => 0,
                Some(e) => timestamp_ms(e).ok_or_else(|| {
                    "date_bin(): the origin must be a constant timestamp, e.g. TIMESTAMP '2026-01-01T00:00:00Z'"
                        .to_string()
                })?,
            };
            // The same grid with the origin moved by whole windows next to
            // zero: pane arithmetic on any time in range cannot overflow.
            WindowSpec::Tumble {
                size,
                origin: origin.rem_euclid(size),
            }
        }
        _ => return Ok(None),
    };
    let time_arg = if name == "date_bin" {
        args[1].clone()
    } else {
        args[0].clone()
    };
    Ok(Some(WindowCall { spec, time_arg }))
}

/// Whether the expression calls a window function anywhere.
pub(crate) fn mentions_window(expr: &Expr) -> Option<&'static str> {
    let mut found = None;
    let _ = expr.apply(|e| {
        if let Expr::ScalarFunction(call) = e
            && let Some(name) = ["tumble", "hop", "session"]
                .into_iter()
                .find(|n| call.func.name() == *n)
        {
            found = Some(name);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn interval_ms(function: &str, what: &str, expr: &Expr) -> Result<i64, String> {
    let bad = || {
        format!("{function}(): the {what} must be a constant interval such as INTERVAL '1 minute'")
    };
    let value = match strip_cast(expr) {
        Expr::Literal(v, _) => v,
        _ => return Err(bad()),
    };
    let ms = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return Err(format!(
                    "{function}(): the {what} must have a fixed length; months and years vary, use days or hours"
                ));
            }
            if v.nanoseconds % 1_000_000 != 0 {
                return Err(format!(
                    "{function}(): the {what} must be whole milliseconds"
                ));
            }
            // Days and nanoseconds may have opposite signs; i128 cannot overflow.
            let ms = i128::from(v.days) * 86_400_000 + i128::from(v.nanoseconds / 1_000_000);
            i64::try_from(ms).unwrap_or(i64::MAX)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds)
        }
        ScalarValue::IntervalYearMonth(Some(_)) => {
            return Err(format!(
                "{function}(): the {what} must have a fixed length; months and years vary, use days or hours"
            ));
        }
        _ => return Err(bad()),
    };
    if ms <= 0 {
        return Err(format!("{function}(): the {what} must be positive"));
    }
    if ms > MAX_WINDOW_MS {
        return Err(format!(
            "{function}(): the {what} must be at most 100 years (36525 days)"
        ));
    }
    Ok(ms)
}

fn strip_cast(expr: &Expr) -> &Expr {
    match expr {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        e => e,
    }
}

fn timestamp_ms(expr: &Expr) -> Option<i64> {
    match strip_cast(expr) {
        Expr::Literal(v, _) => match v {
            ScalarValue::TimestampMillisecond(Some(v), _) => Some(*v),
            ScalarValue::TimestampSecond(Some(v), _) => Some(v * 1000),
            ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v / 1000),
            ScalarValue::TimestampNanosecond(Some(v), _) => Some(v / 1_000_000),
            ScalarValue::Utf8(Some(text)) => ScalarValue::try_from_string(
                text.clone(),
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )
            .ok()
            .and_then(|v| match v {
                ScalarValue::TimestampMillisecond(Some(v), _) => Some(v),
                _ => None,
            }),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_of_hop_windows() {
        let p = WindowSpec::Hop {
            slide: 60_000,
            size: 600_000,
        }
        .panes()
        .unwrap();
        assert_eq!(p.pane_of(61_000), 60_000);
        assert_eq!(p.pane_of(-1), -60_000);
        assert_eq!(p.first_window_of(600_000), 60_000);
        assert_eq!(p.last_end_of(600_000), 1_200_000);
    }

    #[test]
    fn tumble_with_origin() {
        let p = WindowSpec::Tumble {
            size: 3_600_000,
            origin: 1_800_000,
        }
        .panes()
        .unwrap();
        assert_eq!(p.pane_of(0), -1_800_000);
        assert_eq!(p.pane_of(1_800_000), 1_800_000);
    }
}
