//! The configuration of `kpiflow run`: [`RunConfig`] and its embedded
//! [`DEFAULTS`]. `load.rs` layers defaults, the `--config` file, `KPIFLOW_*`
//! variables and flags with figment (the precedence is written there);
//! `check.rs` reads the merged layers into a `RunConfig`, collecting every
//! problem with the file line, variable or flag it came from; `values.rs`
//! reads single values (durations, sizes, times, locations).
//!
//! Serializing a `RunConfig` (`--print-config`) never shows a secret: S3
//! secrets and secret-looking librdkafka properties print as `"***"`.

mod check;
mod layers;
mod load;
mod sections;
mod server;
mod unknown;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use kpiflow_engine::EngineConfig;
use kpiflow_ingest::source::SourceConfig;
use kpiflow_storage::{S3Options, StoreOptions, TableKind};
use kpiflow_types::{Stream, TimeBounds};

#[cfg(test)]
use load::load_with_env;
pub use load::{ConfigErrors, load};
pub use server::{PgSettings, ServerSettings};

/// Every setting's default but `kafka.brokers` (required) and `views` (all
/// shipped views): the first layer of every load.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Everything `kpiflow run` needs to know, checked: every value here is valid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunConfig {
    /// Where tables and checkpoints live.
    #[serde(serialize_with = "values::ser_display")]
    pub data: DataSpec,
    /// The shipped views (`sql/<name>.sql`) to run; default all of them.
    pub views: Vec<String>,
    pub pipeline: PipelineConfig,
    pub kafka: KafkaConfig,
    pub source: SourceSettings,
    pub time_bounds: TimeBoundsConfig,
    pub engine: EngineSettings,
    pub checkpoint: CheckpointConfig,
    pub raw: RawConfig,
    pub compaction: CompactionConfig,
    pub retention: RetentionConfig,
    pub storage: StorageConfig,
    pub server: ServerSettings,
    pub pg: PgSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineConfig {
    /// The Delta application-transaction id of this pipeline's commits:
    /// [A-Za-z0-9_.-]+, at most 64 characters.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port`.
    pub brokers: String,
    /// The consumer group every `kpiflow run` process of the pipeline shares.
    pub group: String,
    #[serde(serialize_with = "values::ser_duration")]
    pub connect_timeout: Duration,
    /// Where to start without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// Also produce every dead letter to `<topic>.dlq`.
    pub dead_letter_topics: bool,
    /// librdkafka properties, applied after kpiflow's own.
    pub properties: KafkaProperties,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    Earliest,
    Latest,
}

impl OffsetReset {
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// librdkafka properties by name. Values of secret-looking names
/// ([`KafkaProperties::is_secret`]) are masked in `Debug` and serialization.
#[derive(Clone, Default, PartialEq)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    /// `sasl.password`, `ssl.key.password`, `sasl.oauthbearer.client.secret`,
    /// `ssl.key.pem`, `sasl.oauthbearer.config` and the like.
    pub fn is_secret(name: &str) -> bool {
        name.contains("password")
            || name.contains("secret")
            || name == "ssl.key.pem"
            || name == "sasl.oauthbearer.config"
    }

    /// As [`SourceConfig::properties`] takes them.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn shown(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| {
            let v = if Self::is_secret(k) { "***" } else { v };
            (k.as_str(), v)
        })
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

impl Serialize for KafkaProperties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.shown() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The `source` section: how the Kafka source batches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSettings {
    pub max_batch_rows: usize,
    #[serde(serialize_with = "values::ser_duration")]
    pub linger: Duration,
    /// At least `kpiflow_ingest::source::MIN_IDLE_TIMEOUT` (1 s).
    #[serde(serialize_with = "values::ser_duration")]
    pub idle_timeout: Duration,
}

/// Event times accepted (others become dead letters).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeBoundsConfig {
    /// Inclusive.
    #[serde(serialize_with = "values::ser_time")]
    pub min: DateTime<Utc>,
    /// Exclusive.
    #[serde(serialize_with = "values::ser_time")]
    pub max: DateTime<Utc>,
    /// How far `event_time` may be ahead of the wall clock; `None` ("off")
    /// turns the check off.
    #[serde(serialize_with = "values::ser_off")]
    pub future_skew: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineSettings {
    /// Allowed out-of-orderness of views that do not set their own.
    #[serde(serialize_with = "values::ser_duration")]
    pub out_of_orderness: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointConfig {
    /// Above zero.
    #[serde(serialize_with = "values::ser_duration")]
    pub interval: Duration,
    /// Checkpoints kept, at least 2 (the newest may be incomplete at a crash).
    pub keep: u32,
}

/// The raw archive: one Delta table per topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawConfig {
    pub enabled: bool,
    /// Per-stream overrides of `enabled`.
    #[serde(serialize_with = "ser_topics")]
    pub topics: BTreeMap<Stream, bool>,
}

impl RawConfig {
    /// Whether `stream`'s records are archived.
    pub fn archives(&self, stream: Stream) -> bool {
        self.topics.get(&stream).copied().unwrap_or(self.enabled)
    }
}

fn ser_topics<S: Serializer>(topics: &BTreeMap<Stream, bool>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Topic {
        enabled: bool,
    }
    let mut map = s.serialize_map(Some(topics.len()))?;
    for (stream, enabled) in topics {
        map.serialize_entry(stream.name(), &Topic { enabled: *enabled })?;
    }
    map.end()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompactionConfig {
    /// How often closed partitions are compacted; `None` ("off") never.
    #[serde(serialize_with = "values::ser_off")]
    pub interval: Option<Duration>,
    /// Bytes per compacted file, 1 MiB to 4 GiB.
    #[serde(serialize_with = "values::ser_size")]
    pub target_file_size: u64,
}

/// How long each kind of table (`retention.<kind>`, named as its folder:
/// raw, views, late, deadletters) keeps its partitions; `None` ("forever")
/// keeps everything.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig(pub BTreeMap<TableKind, Option<Duration>>);

impl RetentionConfig {
    pub fn of(&self, kind: TableKind) -> Option<Duration> {
        self.0.get(&kind).copied().flatten()
    }
}

impl Serialize for RetentionConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (kind, kept) in &self.0 {
            let shown = kept.map_or("forever".to_owned(), |d| {
                humantime::format_duration(d).to_string()
            });
            map.serialize_entry(kind.dir(), &shown)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageConfig {
    /// Longest wait for one request to the store, retries included.
    #[serde(serialize_with = "values::ser_duration")]
    pub request_timeout: Duration,
    pub s3: S3Config,
}

/// S3 and S3-compatible stores. Every field is optional: an unset one falls
/// back to the usual `AWS_*` variable (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT`,
/// `AWS_REGION` or `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`), which
/// object_store reads when storage builds the store (config values win);
/// this layer never reads them itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct S3Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
}

/// A secret: shown and serialized as `***`; [`Secret::expose`] gives it.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// `data`: a local directory (also written `file:///path`) or an S3 bucket
/// and key prefix (`s3://bucket/prefix`). Its `Display` is the spec that
/// `kpiflow_storage::DataLocation::open` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSpec {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Dir(path) => write!(f, "{}", path.display()),
            DataSpec::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            DataSpec::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl RunConfig {
    /// The Kafka source of all four streams with these settings (capacities
    /// and start offsets as [`SourceConfig::new`] has them).
    pub fn source_config(&self) -> SourceConfig {
        let mut config = SourceConfig::new(&self.kafka.brokers, &self.kafka.group);
        config.max_batch_rows = self.source.max_batch_rows;
        config.linger = self.source.linger;
        config.idle_timeout = self.source.idle_timeout;
        config.time_bounds = self.time_bounds();
        config.dead_letter_topics = self.kafka.dead_letter_topics;
        config.auto_offset_reset = self.kafka.auto_offset_reset.as_str().to_owned();
        config.properties = self.kafka.properties.to_pairs();
        config.connect_timeout = self.kafka.connect_timeout;
        config
    }

    pub fn time_bounds(&self) -> TimeBounds {
        let bounds = &self.time_bounds;
        TimeBounds {
            min_ms: bounds.min.timestamp_millis(),
            max_ms: bounds.max.timestamp_millis(),
            max_future_skew_ms: bounds.future_skew.map(|d| d.as_millis() as i64),
        }
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            out_of_orderness_ms: self.engine.out_of_orderness.as_millis() as i64,
            ..EngineConfig::default()
        }
    }

    /// How storage reaches the store of [`RunConfig::data`].
    pub fn store_options(&self) -> StoreOptions {
        let s3 = &self.storage.s3;
        let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_owned());
        StoreOptions {
            s3: S3Options {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: secret(&s3.secret_access_key),
                session_token: secret(&s3.session_token),
                allow_http: s3.allow_http,
            },
            request_timeout: self.storage.request_timeout,
        }
    }

    /// The settings as TOML, secrets as `"***"` (`--print-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunConfig is always representable in TOML")
    }
}
