//! The seeded factory simulator: an endless, deterministic sequence of Kafka
//! records (topic, key, JSON bytes) for the four streams.
//!
//! Same seed and options give the same bytes (with the simulated clock). The
//! model ([`model`]) makes clean events in event-time order; [`inject`] then
//! displaces some event times (out of order within the bound, or late beyond
//! it) and breaks some records, with its own generator so that changing those
//! fractions leaves the underlying events unchanged.

pub mod factory;
pub mod inject;
pub mod model;
pub mod scenario;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use kpiflow_types::Stream;

pub use factory::Factory;
pub use inject::MalformedKind;
pub use model::Event;
pub use scenario::{Scenario, UnknownScenario};

/// Where event times come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Simulated time from [`SimConfig::start`], running as fast as records are
    /// taken: deterministic, and an hour of factory passes in seconds.
    Simulated,
    /// Event times are the wall clock when the record is made; scenario
    /// timing still follows the simulated clock.
    Wall,
}

/// Everything that decides what the simulator produces.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub scenario: Scenario,
    /// Simulated time of the first event.
    pub start: DateTime<Utc>,
    pub clock: Clock,
    /// Fraction of records whose event time is moved back by up to `max_out_of_order`.
    pub out_of_order: f64,
    /// Fraction of records whose event time is moved back by more than `max_out_of_order`.
    pub late: f64,
    /// Fraction of records broken, spread evenly over [`MalformedKind::ALL`].
    pub malformed: f64,
    /// The out-of-orderness bound that `out_of_order` stays within and `late` exceeds.
    pub max_out_of_order: Duration,
}

impl SimConfig {
    /// The default start: 09:30 factory time (UTC+8) on Double 11.
    pub fn default_start() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_794_360_600_000).expect("constant time")
    }

    /// Checks the fractions; the error says which one is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("out-of-order", self.out_of_order),
            ("late", self.late),
            ("malformed", self.malformed),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!(
                    "--{name} must be a fraction between 0 and 1 (e.g. 0.05), got {value}"
                ));
            }
        }
        if self.out_of_order + self.late > 1.0 {
            return Err(format!(
                "--out-of-order ({}) plus --late ({}) must not exceed 1",
                self.out_of_order, self.late
            ));
        }
        if self.max_out_of_order.is_zero() && self.out_of_order > 0.0 {
            return Err("the out-of-order bound must be above zero when --out-of-order > 0".into());
        }
        Ok(())
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            scenario: Scenario::Normal,
            start: Self::default_start(),
            clock: Clock::Simulated,
            out_of_order: 0.0,
            late: 0.0,
            malformed: 0.0,
            max_out_of_order: Duration::from_secs(5),
        }
    }
}

/// Whether a record's event time was displaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timing {
    InOrder,
    /// Moved back by at most the out-of-orderness bound.
    OutOfOrder,
    /// Moved back by more than the bound (1 s to 10 min beyond it).
    Late,
}

/// One Kafka record the simulator made.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRecord {
    pub stream: Stream,
    pub key: String,
    pub payload: Vec<u8>,
    /// The event (after displacement), or `None` for a malformed record.
    pub event: Option<Event>,
    pub malformed: Option<MalformedKind>,
    pub timing: Timing,
}

/// The simulator; an endless [`Iterator`] of records.
pub struct Simulator {
    config: SimConfig,
    model: model::Model,
    /// Draws for displacement and breakage only, so that they do not change the events.
    inject_rng: ChaCha8Rng,
}

/// Added to the seed for the injection generator.
const INJECT_STREAM: u64 = 0x5EED_1A7E;

impl Simulator {
    /// A simulator of the reference factory. Call [`SimConfig::validate`] first
    /// for a readable error; invalid fractions here are clamped.
    pub fn new(config: SimConfig) -> Simulator {
        let model = model::Model::new(
            Factory::reference(),
            config.scenario,
            ChaCha8Rng::seed_from_u64(config.seed),
            config.start.timestamp_millis(),
        );
        Simulator {
            inject_rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(INJECT_STREAM)),
            config,
            model,
        }
    }

    /// The configuration this simulator runs with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn next_record(&mut self) -> SimRecord {
        let mut event = self.model.next_event();
        let stream = event.stream();
        let key = event.key().to_owned();
        if self.config.clock == Clock::Wall {
            let now = Utc::now().timestamp_millis();
            event.shift_times(now - event.event_time().timestamp_millis());
        }

        let bound_ms = self.config.max_out_of_order.as_millis().max(1) as i64;
        let draw: f64 = self.inject_rng.random();
        let timing = if draw < self.config.late {
            Timing::Late
        } else if draw < self.config.late + self.config.out_of_order {
            Timing::OutOfOrder
        } else {
            Timing::InOrder
        };
        let back_ms = match timing {
            Timing::InOrder => 0,
            Timing::OutOfOrder => self.inject_rng.random_range(1..=bound_ms),
            Timing::Late => bound_ms + self.inject_rng.random_range(1_000..=600_000),
        };
        if back_ms > 0 {
            let t = event.event_time() - chrono::Duration::milliseconds(back_ms);
            event.set_event_time(t);
        }

        let json = event.to_json();
        let broken = self.inject_rng.random::<f64>() < self.config.malformed;
        if broken {
            let kind =
                MalformedKind::ALL[self.inject_rng.random_range(0..MalformedKind::ALL.len())];
            let payload = inject::malform(kind, stream, &json, &mut self.inject_rng);
            SimRecord {
                stream,
                key,
                payload,
                event: None,
                malformed: Some(kind),
                timing,
            }
        } else {
            SimRecord {
                stream,
                key,
                payload: json,
                event: Some(event),
                malformed: None,
                timing,
            }
        }
    }
}

impl Iterator for Simulator {
    type Item = SimRecord;

    fn next(&mut self) -> Option<SimRecord> {
        Some(self.next_record())
    }
}
