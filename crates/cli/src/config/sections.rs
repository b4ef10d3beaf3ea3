//! Readers of the tables among the settings: `kafka.properties`, `views`,
//! `raw.topics.<stream>` and `storage.s3`.

use std::collections::BTreeMap;

use figment::value::Value;

use kpiflow_types::Stream;

use super::check::{Checker, Found, path};
use super::values::{self, shown};
use super::{KafkaProperties, S3Config, Secret};

impl Checker<'_> {
    pub(super) fn properties(&mut self) -> Option<KafkaProperties> {
        let key = path("kafka.properties");
        self.known.insert(key.clone());
        let dict = match self.lookup(&key) {
            Found::Absent => return Some(KafkaProperties::default()),
            Found::Blocked => return None,
            Found::Value(Value::Dict(_, dict)) => dict,
            Found::Value(other) => {
                let message = format!(
                    "expected a table of librdkafka properties (e.g. \"security.protocol\" = \"SSL\"), got {}",
                    shown(other)
                );
                self.report(&key, Some(other), message);
                return None;
            }
        };
        let mut properties = BTreeMap::new();
        let mut valid = true;
        for (name, value) in dict {
            let mut at = key.clone();
            at.push(name.clone());
            let problem = match (name.as_str(), values::property_value(value)) {
                (_, Err(e)) => Some(e),
                ("bootstrap.servers", _) => Some("set kafka.brokers instead".to_owned()),
                ("group.id", _) => Some("set kafka.group instead".to_owned()),
                ("auto.offset.reset", _) => Some("set kafka.auto_offset_reset instead".to_owned()),
                ("enable.auto.commit", _) => Some("kpiflow commits offsets itself once a checkpoint is durable; automatic commits would move them past unsaved records".to_owned()),
                (_, Ok(text)) => {
                    properties.insert(name.clone(), text);
                    None
                }
            };
            if let Some(message) = problem {
                self.report(&at, Some(value), message);
                valid = false;
            }
        }
        valid.then_some(KafkaProperties(properties))
    }

    pub(super) fn views(&mut self) -> Option<Vec<String>> {
        let all = || crate::views::VIEWS.iter().map(|(n, _)| n.to_string());
        let key = path("views");
        let Some(value) = self.optional(&key, |v, text| match v {
            Value::Array(_, items) => items
                .iter()
                .map(|item| values::string(item).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>(),
            Value::String(_, list) if text => Ok(list
                .split(',')
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .collect()),
            other => Err(format!(
                "expected a list of view names (e.g. [\"sales_by_channel_region\"]), got {}",
                shown(other)
            )),
        })?
        else {
            return Some(all().collect());
        };
        let shipped: Vec<String> = all().collect();
        let unknown: Vec<String> = value
            .iter()
            .filter(|name| !shipped.contains(name))
            .map(|name| format!("{name:?}"))
            .collect();
        let twice = value
            .iter()
            .enumerate()
            .find(|(i, name)| value[..*i].contains(name));
        let message = if value.is_empty() {
            "the list is empty: leave views out to run every shipped view".to_owned()
        } else if !unknown.is_empty() {
            format!(
                "unknown view {}: the shipped views are {}",
                unknown.join(", "),
                shipped.join(", ")
            )
        } else if let Some((_, name)) = twice {
            format!("{name:?} is listed twice")
        } else {
            return Some(value);
        };
        if let Found::Value(found) = self.lookup(&key) {
            self.report(&key, Some(found), message);
        }
        None
    }

    pub(super) fn raw_topics(&mut self) -> Option<BTreeMap<Stream, bool>> {
        let key = path("raw.topics");
        self.sections.insert(key.clone());
        let dict = match self.lookup(&key) {
            Found::Value(Value::Dict(_, dict)) => dict,
            Found::Value(_) | Found::Blocked => return None, // reported by the key walk
            Found::Absent => return Some(BTreeMap::new()),
        };
        let mut topics = BTreeMap::new();
        let mut valid = true;
        for (name, value) in dict {
            let mut at = key.clone();
            at.push(name.clone());
            match name.parse::<Stream>() {
                Ok(stream) => {
                    at.push("enabled".into());
                    match self.optional(&at, values::boolean) {
                        Some(Some(enabled)) => {
                            topics.insert(stream, enabled);
                        }
                        Some(None) => {}
                        None => valid = false,
                    }
                }
                Err(e) => {
                    self.known.insert(at.clone());
                    self.report(&at, Some(value), e.to_string());
                    valid = false;
                }
            }
        }
        valid.then_some(topics)
    }

    pub(super) fn s3(&mut self) -> Option<S3Config> {
        let text = |v: &Value, _: bool| values::non_empty(v);
        let endpoint = self.optional(&path("storage.s3.endpoint"), |v, _| {
            let url = values::non_empty(v)?;
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(url)
            } else {
                Err(format!(
                    "{url:?} is not an http:// or https:// URL (e.g. \"http://127.0.0.1:9000\")"
                ))
            }
        });
        let region = self.optional(&path("storage.s3.region"), text);
        let access_key_id = self.optional(&path("storage.s3.access_key_id"), text);
        let secret = |v: &Value, _: bool| values::non_empty(v).map(Secret::new);
        let secret_access_key = self.optional(&path("storage.s3.secret_access_key"), secret);
        let session_token = self.optional(&path("storage.s3.session_token"), secret);
        let allow_http = self.optional(&path("storage.s3.allow_http"), values::boolean);
        Some(S3Config {
            endpoint: endpoint?,
            region: region?,
            access_key_id: access_key_id?,
            secret_access_key: secret_access_key?,
            session_token: session_token?,
            allow_http: allow_http?,
        })
    }
}
