//! The layers figment merges, each a [`Provider`] with its own name so
//! that a value's tag tells its layer: TOML text (the defaults, the file),
//! the `KPIFLOW_*` variables and the flags. The last two remember which
//! variable or flag set each key.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::load::Problem;
use crate::args::RunArgs;

pub const DEFAULTS_NAME: &str = "kpiflow defaults";
pub const FILE_NAME: &str = "configuration file";
pub const ENV_NAME: &str = "environment";
pub const FLAGS_NAME: &str = "command-line flags";

/// The project's other `KPIFLOW_*` variables (tests, benches, scripts),
/// which are not settings of `run`.
fn is_other_variable(rest: &str) -> bool {
    matches!(
        rest,
        "BLESS" | "FAILPOINT" | "TANSU" | "MOTO" | "PYTHON" | "CHROMIUM" | "CACHE_DIR"
    ) || rest.starts_with("TEST_")
        || rest.starts_with("BENCH_")
}

/// One layer, named so that a value's origin can be told from its tag.
pub struct Layer {
    name: &'static str,
    path: Option<PathBuf>,
    data: Result<Dict, figment::Error>,
}

impl Layer {
    pub fn new(name: &'static str, dict: Dict) -> Layer {
        Layer {
            name,
            path: None,
            data: Ok(dict),
        }
    }

    /// TOML through figment's own reader.
    pub fn toml(name: &'static str, path: Option<&Path>, text: &str) -> Layer {
        let data = Toml::string(text)
            .data()
            .map(|mut profiles| profiles.remove(&Profile::Default).unwrap_or_default());
        Layer {
            name,
            path: path.map(Path::to_owned),
            data,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        match &self.path {
            Some(path) => Metadata::from(self.name, path.as_path()),
            None => Metadata::named(self.name),
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.data.clone().map(|dict| Profile::Default.collect(dict))
    }
}

/// `KPIFLOW_*` variables as a layer: `KPIFLOW_KAFKA__BROKERS=a:9092` sets
/// `kafka.brokers`. Every value is a string (the checker reads `"true"` or
/// `"5"` as it needs); in `KPIFLOW_KAFKA__PROPERTIES__<NAME>` the `_` of
/// the name become `.` (`..._SECURITY_PROTOCOL` sets `security.protocol`).
/// `KPIFLOW_BROKERS`, which `produce` reads too, stands for
/// `KPIFLOW_KAFKA__BROKERS` when that is unset.
pub struct EnvLayer {
    pub dict: Dict,
    /// Each key path set and the variable that set it.
    pub vars: Vec<(Vec<String>, String)>,
}

impl EnvLayer {
    pub fn new(
        env: impl IntoIterator<Item = (String, String)>,
        problems: &mut Vec<Problem>,
    ) -> Self {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| {
                name.strip_prefix("KPIFLOW_")
                    .is_some_and(|rest| !is_other_variable(rest))
            })
            .collect();
        vars.sort();
        let has_kafka_brokers = vars.iter().any(|(n, _)| n == "KPIFLOW_KAFKA__BROKERS");
        let mut layer = EnvLayer {
            dict: Dict::new(),
            vars: Vec::new(),
        };
        for (name, value) in vars {
            let rest = &name["KPIFLOW_".len()..];
            let mut path: Vec<String> = if rest == "BROKERS" {
                if has_kafka_brokers {
                    continue;
                }
                vec!["kafka".into(), "brokers".into()]
            } else {
                rest.to_ascii_lowercase()
                    .split("__")
                    .map(str::to_owned)
                    .collect()
            };
            if path.iter().any(String::is_empty) {
                problems.push(Problem {
                    source: Some(name),
                    key: String::new(),
                    message: "not a setting: nested keys are joined by exactly two underscores, e.g. KPIFLOW_KAFKA__BROKERS".into(),
                    rank: (1, 0),
                });
                continue;
            }
            if path.len() == 3 && path[0] == "kafka" && path[1] == "properties" {
                path[2] = path[2].replace('_', ".");
            }
            let value = Value::from(value);
            if let Err(other) = insert(&mut layer.dict, &path, value) {
                problems.push(Problem {
                    source: Some(name),
                    key: path.join("."),
                    message: format!("conflicts with {}", var_of(&layer.vars, &other)),
                    rank: (1, 0),
                });
                continue;
            }
            layer.vars.push((path, name));
        }
        layer
    }
}

/// Inserts `value` at `path`; on a clash with a value already there (a
/// table where a value goes or the other way), the clashing path.
fn insert(dict: &mut Dict, path: &[String], value: Value) -> Result<(), Vec<String>> {
    let (last, parents) = path.split_last().expect("paths are not empty");
    let mut dict = dict;
    for (i, segment) in parents.iter().enumerate() {
        let entry = dict
            .entry(segment.clone())
            .or_insert_with(|| Value::from(Dict::new()));
        match entry {
            Value::Dict(_, inner) => dict = inner,
            _ => return Err(path[..=i].to_vec()),
        }
    }
    if dict.contains_key(last) {
        return Err(path.to_vec());
    }
    dict.insert(last.clone(), value);
    Ok(())
}

fn var_of(vars: &[(Vec<String>, String)], path: &[String]) -> String {
    vars.iter()
        .find(|(p, _)| p.starts_with(path) || path.starts_with(p))
        .map(|(_, name)| name.clone())
        .unwrap_or_else(|| "another variable".into())
}

/// The flags of `kpiflow run` that set a setting.
pub struct FlagLayer {
    pub dict: Dict,
    pub names: Vec<(Vec<String>, String)>,
}

impl FlagLayer {
    pub fn new(args: &RunArgs) -> FlagLayer {
        let mut layer = FlagLayer {
            dict: Dict::new(),
            names: Vec::new(),
        };
        let flags = [
            (&args.brokers, "kafka.brokers", "--brokers"),
            (&args.group, "kafka.group", "--group"),
            (&args.data, "data", "--data"),
            (
                &args.checkpoint_interval,
                "checkpoint.interval",
                "--checkpoint-interval",
            ),
            (&args.pipeline_id, "pipeline.id", "--pipeline-id"),
            (&args.http, "server.listen", "--http"),
            (&args.pg, "pg.listen", "--pg"),
        ];
        for (value, key, flag) in flags {
            if let Some(value) = value {
                let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                layer.set(path, value, flag.to_owned());
            }
        }
        if args.insecure {
            layer.set(path_of("server.insecure"), "true", "--insecure".to_owned());
        }
        for (name, value) in &args.properties {
            let path = vec!["kafka".into(), "properties".into(), name.clone()];
            layer.set(path, value, format!("-X {name}={value}"));
        }
        layer
    }

    fn set(&mut self, path: Vec<String>, value: &str, flag: String) {
        // A repeated -X replaces the earlier one: the last wins, as in librdkafka.
        let (last, parents) = path.split_last().expect("paths are not empty");
        let mut dict = Some(&mut self.dict);
        for segment in parents {
            dict = match dict.and_then(|d| d.get_mut(segment)) {
                Some(Value::Dict(_, inner)) => Some(inner),
                _ => None,
            };
        }
        if let Some(dict) = dict {
            dict.remove(last);
        }
        insert(&mut self.dict, &path, Value::from(value.to_owned()))
            .expect("flags set fixed paths that never clash");
        self.names.retain(|(p, _)| *p != path);
        self.names.push((path, flag));
    }
}

fn path_of(key: &str) -> Vec<String> {
    key.split('.').map(str::to_owned).collect()
}
