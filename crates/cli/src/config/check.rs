//! Reading the merged layers into a [`RunConfig`], checking every setting
//! and collecting every problem (figment's own extraction stops at the
//! first). A key the reader never asked for is unknown, reported with the
//! closest valid key.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use figment::value::{Dict, Value};

use super::load::{Origin, Origins, Problem};
use super::values::{self, shown};
use super::*;
use kpiflow_ingest::source::MIN_IDLE_TIMEOUT;
use kpiflow_storage::TableKind;

pub(super) type Path = Vec<String>;

pub(super) fn path(key: &str) -> Path {
    key.split('.').map(str::to_owned).collect()
}

/// What a lookup found.
pub(super) enum Found<'a> {
    Value(&'a Value),
    Absent,
    /// A table on the way is something else (reported by the key walk).
    Blocked,
}

pub struct Checker<'a> {
    pub(super) root: &'a Dict,
    pub(super) origins: &'a Origins<'a>,
    problems: Vec<Problem>,
    /// Settings read, and tables read whole (`kafka.properties`).
    pub(super) known: BTreeSet<Path>,
    /// Tables that may be empty (`raw.topics`).
    pub(super) sections: BTreeSet<Path>,
}

impl<'a> Checker<'a> {
    pub fn new(root: &'a Dict, origins: &'a Origins<'a>) -> Checker<'a> {
        Checker {
            root,
            origins,
            problems: Vec::new(),
            known: BTreeSet::new(),
            sections: BTreeSet::new(),
        }
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    pub(super) fn lookup(&self, path: &[String]) -> Found<'a> {
        let (last, parents) = path.split_last().expect("paths are not empty");
        let mut dict = self.root;
        for segment in parents {
            match dict.get(segment) {
                None => return Found::Absent,
                Some(Value::Dict(_, inner)) => dict = inner,
                Some(_) => return Found::Blocked,
            }
        }
        dict.get(last).map_or(Found::Absent, Found::Value)
    }

    pub(super) fn report(
        &mut self,
        path: &[String],
        value: Option<&Value>,
        message: impl Into<String>,
    ) {
        let (source, rank) = match value {
            Some(v) => self.origins.describe(v, path),
            None => (None, (3, 0)),
        };
        self.problems.push(Problem {
            source,
            key: path.join("."),
            message: message.into(),
            rank,
        });
    }

    /// Reports at `key`'s value (for checks across settings).
    pub(super) fn report_at(&mut self, key: &str, message: impl Into<String>) {
        let path = path(key);
        let value = match self.lookup(&path) {
            Found::Value(v) => Some(v),
            _ => None,
        };
        self.report(&path, value, message);
    }

    /// Values from the environment and flags are text.
    pub(super) fn is_text(&self, value: &Value) -> bool {
        matches!(self.origins.origin(value), Origin::Env | Origin::Flags)
    }

    /// A setting that may be absent: `Some(None)` when it is.
    pub(super) fn optional<T>(
        &mut self,
        key: &[String],
        read: impl FnOnce(&Value, bool) -> Result<T, String>,
    ) -> Option<Option<T>> {
        self.known.insert(key.to_vec());
        match self.lookup(key) {
            Found::Absent => Some(None),
            Found::Blocked => None,
            Found::Value(value) => match read(value, self.is_text(value)) {
                Ok(v) => Some(Some(v)),
                Err(message) => {
                    self.report(key, Some(value), message);
                    None
                }
            },
        }
    }

    /// A setting with a default (so never absent) or a required one.
    pub(super) fn setting<T>(
        &mut self,
        key: &str,
        read: impl FnOnce(&Value, bool) -> Result<T, String>,
    ) -> Option<T> {
        let key = path(key);
        match self.optional(&key, read)? {
            Some(v) => Some(v),
            None => {
                let hint = match key.join(".").as_str() {
                    "kafka.brokers" => "required: set brokers under [kafka] in the file, KPIFLOW_KAFKA__BROKERS or --brokers (e.g. \"kafka1:9092,kafka2:9092\")".to_owned(),
                    _ => "not set, and it has no default".to_owned(),
                };
                self.report(&key, None, hint);
                None
            }
        }
    }

    pub(super) fn duration(&mut self, key: &str, min: Duration, why: &str) -> Option<Duration> {
        self.setting(key, |v, _| {
            let d = values::duration(v)?;
            at_least(d, min, why)
        })
    }

    /// Reads every setting; `None` if any is invalid.
    pub fn run_config(&mut self) -> Option<RunConfig> {
        let above_zero = Duration::from_millis(1);
        let id = self.setting("pipeline.id", |v, _| values::pipeline_id(v));
        let brokers = self.setting("kafka.brokers", |v, _| values::brokers(v));
        let group = self.setting("kafka.group", |v, _| values::non_empty(v));
        let connect_timeout = self.duration("kafka.connect_timeout", above_zero, "");
        let auto_offset_reset =
            self.setting("kafka.auto_offset_reset", |v, _| match values::string(v)? {
                "earliest" => Ok(OffsetReset::Earliest),
                "latest" => Ok(OffsetReset::Latest),
                _ => Err(format!("{}: expected \"earliest\" or \"latest\"", shown(v))),
            });
        let dead_letter_topics = self.setting("kafka.dead_letter_topics", values::boolean);
        let properties = self.properties();
        let data = self.setting("data", |v, _| values::data_location(v));
        let views = self.views();
        let max_batch_rows = self.setting("source.max_batch_rows", |v, text| {
            let n = values::integer(v, text)?;
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=1 << 20).contains(n))
                .ok_or_else(|| format!("{n} is not between 1 and 1048576 rows"))
        });
        let linger = self.duration("source.linger", above_zero, "");
        let idle_timeout = self.duration(
            "source.idle_timeout",
            MIN_IDLE_TIMEOUT,
            ": partition ends are known from librdkafka's statistics every 500 ms",
        );
        let min = self.setting("time_bounds.min", |v, _| values::time(v));
        let max = self.setting("time_bounds.max", |v, _| values::time(v));
        let future_skew = self.setting("time_bounds.future_skew", |v, _| {
            let d = values::duration_or(v, "off")?;
            at_most(d, Duration::from_secs(366 * 86_400))
        });
        if let (Some(min), Some(max)) = (min, max)
            && min >= max
        {
            let message = format!(
                "{} must be after time_bounds.min ({}): the range is min inclusive to max exclusive",
                values::format_time(&max),
                values::format_time(&min)
            );
            self.report_at("time_bounds.max", message);
        }
        let out_of_orderness = self.setting("engine.out_of_orderness", |v, _| {
            let limit = kpiflow_engine::MAX_OUT_OF_ORDERNESS_MS as u64;
            at_most(Some(values::duration(v)?), Duration::from_millis(limit))
                .map(|d| d.unwrap_or_default())
        });
        let interval = self.duration("checkpoint.interval", above_zero, "");
        let keep = self.setting("checkpoint.keep", |v, text| {
            let n = values::integer(v, text)?;
            u32::try_from(n).ok().filter(|n| *n >= 2).ok_or_else(|| {
                format!(
                    "{n}: keep at least 2 checkpoints (the newest may be unfinished after a crash)"
                )
            })
        });
        let raw_enabled = self.setting("raw.enabled", values::boolean);
        let raw_topics = self.raw_topics();
        let compaction_interval = self.setting("compaction.interval", |v, _| {
            let d = values::duration_or(v, "off")?;
            if d.is_some_and(|d| d.is_zero()) {
                return Err("must be above zero, or \"off\"".into());
            }
            Ok(d)
        });
        let target_file_size = self.setting("compaction.target_file_size", |v, text| {
            let bytes = values::byte_size(v, text)?;
            if !(1 << 20..=4 << 30).contains(&bytes) {
                return Err(format!(
                    "{} is not between 1MiB and 4GiB",
                    values::format_size(bytes)
                ));
            }
            Ok(bytes)
        });
        let mut retention = BTreeMap::new();
        let mut retention_valid = true;
        for kind in TableKind::ALL {
            let kept = self.setting(&format!("retention.{}", kind.dir()), |v, _| {
                let d = values::duration_or(v, "forever")?;
                if d.is_some_and(|d| d < Duration::from_secs(3600)) {
                    return Err(format!(
                        "{}: keep at least 1h (tables are partitioned by the hour), or \"forever\"",
                        shown(v)
                    ));
                }
                Ok(d)
            });
            match kept {
                Some(kept) => {
                    retention.insert(kind, kept);
                }
                None => retention_valid = false,
            }
        }
        let request_timeout = self.duration("storage.request_timeout", above_zero, "");
        let s3 = self.s3();
        let server = self.server();
        let pg = self.pg(server.as_ref());
        self.unknown_keys();

        let retention = retention_valid.then_some(RetentionConfig(retention));
        Some(RunConfig {
            data: data?,
            views: views?,
            pipeline: PipelineConfig { id: id? },
            kafka: KafkaConfig {
                brokers: brokers?,
                group: group?,
                connect_timeout: connect_timeout?,
                auto_offset_reset: auto_offset_reset?,
                dead_letter_topics: dead_letter_topics?,
                properties: properties?,
            },
            source: SourceSettings {
                max_batch_rows: max_batch_rows?,
                linger: linger?,
                idle_timeout: idle_timeout?,
            },
            time_bounds: TimeBoundsConfig {
                min: min?,
                max: max?,
                future_skew: future_skew?,
            },
            engine: EngineSettings {
                out_of_orderness: out_of_orderness?,
            },
            checkpoint: CheckpointConfig {
                interval: interval?,
                keep: keep?,
            },
            raw: RawConfig {
                enabled: raw_enabled?,
                topics: raw_topics?,
            },
            compaction: CompactionConfig {
                interval: compaction_interval?,
                target_file_size: target_file_size?,
            },
            retention: retention?,
            storage: StorageConfig {
                request_timeout: request_timeout?,
                s3: s3?,
            },
            server: server?,
            pg: pg?,
        })
    }
}

fn at_least(d: Duration, min: Duration, why: &str) -> Result<Duration, String> {
    if d >= min {
        return Ok(d);
    }
    let shown = humantime::format_duration(d);
    if min == Duration::from_millis(1) {
        Err(format!("\"{shown}\" must be above zero{why}"))
    } else {
        Err(format!(
            "\"{shown}\" is below the minimum of {}{why}",
            humantime::format_duration(min)
        ))
    }
}

fn at_most(d: Option<Duration>, max: Duration) -> Result<Option<Duration>, String> {
    match d {
        Some(d) if d > max => Err(format!(
            "\"{}\" is above the maximum of {}",
            humantime::format_duration(d),
            humantime::format_duration(max)
        )),
        _ => Ok(d),
    }
}
