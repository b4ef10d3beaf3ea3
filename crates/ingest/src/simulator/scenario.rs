//! Scenarios and the daily demand curve: everything that makes one simulated
//! hour differ from another.

use std::fmt;
use std::str::FromStr;

/// Minutes after the simulation start.
const MINUTE_MS: i64 = 60_000;

/// A named pattern of events layered over the normal factory day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// An ordinary day: daily seasonality, random faults, production lagging sales.
    Normal,
    /// A Double 11 style hour: sales at 5× and more shipments delayed, from +30 min to +90 min.
    Peak,
    /// Line `P1-L2` faults at +20 min (device `D-P1-L2-INJ`), is under maintenance
    /// from +35 min and runs again from +50 min: no output in between.
    Fault,
    /// From +15 min to +75 min the plan makes `SKU-AF-02` at 2× and `SKU-RC-01`
    /// at 0.3× of what sells; the plan then recovers.
    Mismatch,
}

impl Scenario {
    /// Every scenario, for help texts and tests.
    pub const ALL: [Scenario; 4] = [
        Scenario::Normal,
        Scenario::Peak,
        Scenario::Fault,
        Scenario::Mismatch,
    ];

    /// The peak's window, in milliseconds after the start.
    pub const PEAK_WINDOW_MS: (i64, i64) = (30 * MINUTE_MS, 90 * MINUTE_MS);
    /// Sales multiplier inside the peak window.
    pub const PEAK_SALES_FACTOR: f64 = 5.0;
    /// The faulty line of [`Scenario::Fault`].
    pub const FAULT_LINE: &'static str = "P1-L2";
    /// The device that faults.
    pub const FAULT_DEVICE: &'static str = "D-P1-L2-INJ";
    /// Fault, maintenance start and back-to-running, in milliseconds after the start.
    pub const FAULT_TIMES_MS: (i64, i64, i64) = (20 * MINUTE_MS, 35 * MINUTE_MS, 50 * MINUTE_MS);
    /// Window in which the plan diverges from sales in [`Scenario::Mismatch`].
    pub const MISMATCH_WINDOW_MS: (i64, i64) = (15 * MINUTE_MS, 75 * MINUTE_MS);
    /// The overproduced SKU and its plan factor.
    pub const MISMATCH_OVER: (&'static str, f64) = ("SKU-AF-02", 2.0);
    /// The underproduced SKU and its plan factor.
    pub const MISMATCH_SHORT: (&'static str, f64) = ("SKU-RC-01", 0.3);

    /// The scenario's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Normal => "normal",
            Scenario::Peak => "peak",
            Scenario::Fault => "fault",
            Scenario::Mismatch => "mismatch",
        }
    }

    /// Multiplier on order and shipment volume `offset_ms` after the start.
    pub fn sales_factor(self, offset_ms: i64) -> f64 {
        if self == Scenario::Peak && within(offset_ms, Self::PEAK_WINDOW_MS) {
            Self::PEAK_SALES_FACTOR
        } else {
            1.0
        }
    }

    /// Multiplier on the carriers' delay rate.
    pub fn delay_factor(self, offset_ms: i64) -> f64 {
        if self == Scenario::Peak && within(offset_ms, Self::PEAK_WINDOW_MS) {
            2.5
        } else {
            1.0
        }
    }

    /// Multiplier on the production plan of `sku`.
    pub fn plan_factor(self, sku: &str, offset_ms: i64) -> f64 {
        if self != Scenario::Mismatch || !within(offset_ms, Self::MISMATCH_WINDOW_MS) {
            return 1.0;
        }
        [Self::MISMATCH_OVER, Self::MISMATCH_SHORT]
            .into_iter()
            .find(|(name, _)| *name == sku)
            .map_or(1.0, |(_, factor)| factor)
    }
}

fn within(offset_ms: i64, (from, to): (i64, i64)) -> bool {
    (from..to).contains(&offset_ms)
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that is not one of [`Scenario::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown scenario '{0}': use one of normal, peak, fault, mismatch")]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == s)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}

/// Relative sales volume by hour of the factory's local day (UTC+8): quiet at
/// night, a late-morning peak and a stronger evening one. Averages about 1.
const HOURLY: [f64; 24] = [
    0.45, 0.30, 0.20, 0.15, 0.15, 0.20, 0.35, 0.60, 0.85, 1.05, 1.20, 1.30, //
    1.25, 1.15, 1.10, 1.10, 1.15, 1.20, 1.35, 1.55, 1.65, 1.60, 1.30, 0.85,
];

/// The factory's offset from UTC, for the daily curve and shifts.
pub const LOCAL_OFFSET_MS: i64 = 8 * 3_600_000;

/// Daily seasonality at epoch milliseconds `t`, interpolated between hours.
pub fn seasonality(t_ms: i64) -> f64 {
    let local_hours = (t_ms + LOCAL_OFFSET_MS).rem_euclid(86_400_000) as f64 / 3_600_000.0;
    let hour = local_hours.floor() as usize % 24;
    let frac = local_hours - local_hours.floor();
    HOURLY[hour] * (1.0 - frac) + HOURLY[(hour + 1) % 24] * frac
}

/// The shift working at epoch milliseconds `t`: day 08–16, swing 16–24, night 00–08 local.
pub fn shift(t_ms: i64) -> &'static str {
    match (t_ms + LOCAL_OFFSET_MS).rem_euclid(86_400_000) / 3_600_000 {
        8..=15 => "day",
        16..=23 => "swing",
        _ => "night",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_curve_averages_about_one() {
        let mean = HOURLY.iter().sum::<f64>() / 24.0;
        assert!((0.9..1.1).contains(&mean), "{mean}");
    }

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
        }
        let err = "rush".parse::<Scenario>().unwrap_err().to_string();
        assert!(err.contains("normal, peak, fault, mismatch"), "{err}");
    }
}
