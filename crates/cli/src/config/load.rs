//! Layering the settings with figment and telling where each value came
//! from: the file and line, the `KPIFLOW_*` variable or the flag.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Value};
use figment::{Figment, Profile, Provider};

use super::check::Checker;
use super::layers::{DEFAULTS_NAME, ENV_NAME, EnvLayer, FILE_NAME, FLAGS_NAME, FlagLayer, Layer};
use super::{DEFAULTS, RunConfig};
use crate::args::RunArgs;

/// One invalid setting: where its value came from (none for a missing one),
/// the key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `kpiflow.toml:12`, `KPIFLOW_CHECKPOINT__INTERVAL` or `--brokers`.
    pub source: Option<String>,
    /// `checkpoint.interval`; empty for a file that cannot be read or parsed.
    pub key: String,
    pub message: String,
    /// Sorts the report: the file's lines in order, then variables, flags,
    /// and unset settings.
    pub(super) rank: (u8, usize),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            write!(f, "{source}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every invalid setting of one load, in the order of the settings. A usage
/// error: `kpiflow run` prints it and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads the configuration of `kpiflow run` from its flags, the file they
/// name and the process environment.
pub fn load(args: &RunArgs) -> Result<RunConfig, ConfigErrors> {
    let env = std::env::vars_os().filter_map(|(name, value)| {
        let name = name.into_string().ok()?;
        Some((name, value.to_string_lossy().into_owned()))
    });
    load_with_env(args, env)
}

/// [`load`] with the given environment instead of the process's.
pub fn load_with_env(
    args: &RunArgs,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RunConfig, ConfigErrors> {
    let mut problems = Vec::new();
    let file = args
        .config
        .as_deref()
        .and_then(|path| ConfigFile::read(path, &mut problems));
    let env = EnvLayer::new(env, &mut problems);
    let flags = FlagLayer::new(args);

    // Precedence, lowest first: embedded defaults (DEFAULTS) < the file of
    // `--config` (TOML; none without the flag) < `KPIFLOW_*` environment
    // variables (`__` between nested keys) < command-line flags. A later
    // layer replaces a value of an earlier one; tables merge key by key, so
    // `-X` adds to `kafka.properties` from the file and wins on the same key.
    let mut figment = Figment::new().merge(Layer::toml(DEFAULTS_NAME, None, DEFAULTS));
    if let Some(file) = &file {
        figment = figment.merge(Layer::toml(FILE_NAME, Some(&file.path), &file.text));
    }
    let figment = figment
        .merge(Layer::new(ENV_NAME, env.dict.clone()))
        .merge(Layer::new(FLAGS_NAME, flags.dict.clone()));

    let merged = match figment.data() {
        Ok(mut profiles) => profiles.remove(&Profile::Default).unwrap_or_default(),
        Err(e) => {
            problems.push(Problem {
                source: None,
                key: String::new(),
                message: e.to_string(),
                rank: (3, 0),
            });
            Dict::new()
        }
    };
    let origins = Origins {
        figment: &figment,
        file: file.as_ref(),
        env: &env.vars,
        flags: &flags.names,
    };
    let mut checker = Checker::new(&merged, &origins);
    let config = checker.run_config();
    problems.extend(checker.into_problems());
    problems.sort_by_key(|p| p.rank);
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigErrors(problems)),
    }
}

/// The `--config` file, read once: figment reads its settings, toml_edit its
/// key positions (figment keeps no line numbers).
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    document: toml_edit::ImDocument<String>,
}

impl ConfigFile {
    fn read(path: &Path, problems: &mut Vec<Problem>) -> Option<ConfigFile> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                problems.push(Problem {
                    source: Some(format!("--config {shown}")),
                    key: String::new(),
                    message: format!("cannot read the configuration file: {e}"),
                    rank: (0, 0),
                });
                return None;
            }
        };
        match toml_edit::ImDocument::parse(text.clone()) {
            Ok(document) => Some(ConfigFile {
                path: path.to_owned(),
                text,
                document,
            }),
            Err(e) => {
                let line = e.span().map(|span| line_at(&text, span.start));
                problems.push(Problem {
                    source: Some(match line {
                        Some(line) => format!("{shown}:{line}"),
                        None => shown,
                    }),
                    key: String::new(),
                    message: format!("not valid TOML: {}", e.message().trim()),
                    rank: (0, line.unwrap_or(0)),
                });
                None
            }
        }
    }

    /// The line of `path`'s key, or of the nearest enclosing key found.
    fn line_of(&self, path: &[String]) -> Option<usize> {
        let mut table: &dyn toml_edit::TableLike = self.document.as_table();
        let mut line = None;
        for segment in path {
            let Some((key, item)) = table.get_key_value(segment) else {
                break;
            };
            if let Some(span) = key.span() {
                line = Some(line_at(&self.text, span.start));
            }
            match item.as_table_like() {
                Some(inner) => table = inner,
                None => break,
            }
        }
        line
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Tells where a value came from, for messages.
pub struct Origins<'a> {
    figment: &'a Figment,
    file: Option<&'a ConfigFile>,
    env: &'a [(Vec<String>, String)],
    flags: &'a [(Vec<String>, String)],
}

/// Which layer a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Defaults,
    File,
    Env,
    Flags,
}

impl Origins<'_> {
    pub fn origin(&self, value: &Value) -> Origin {
        match self.figment.get_metadata(value.tag()).map(|m| &*m.name) {
            Some(FILE_NAME) => Origin::File,
            Some(ENV_NAME) => Origin::Env,
            Some(FLAGS_NAME) => Origin::Flags,
            _ => Origin::Defaults,
        }
    }

    /// `kpiflow.toml:12`, `KPIFLOW_KAFKA__BROKERS`, `--brokers`, or none
    /// for a default; and the problem's rank (see [`Problem`]).
    pub fn describe(&self, value: &Value, path: &[String]) -> (Option<String>, (u8, usize)) {
        let named = |list: &[(Vec<String>, String)]| {
            list.iter()
                .filter(|(p, _)| path.starts_with(p) || p.starts_with(path))
                .map(|(_, name)| name.clone())
                .next()
        };
        match self.origin(value) {
            Origin::File => match self.file {
                Some(file) => {
                    let shown = file.path.display();
                    match file.line_of(path) {
                        Some(line) => (Some(format!("{shown}:{line}")), (0, line)),
                        None => (Some(shown.to_string()), (0, 0)),
                    }
                }
                None => (None, (0, 0)),
            },
            Origin::Env => (named(self.env), (1, 0)),
            Origin::Flags => (named(self.flags), (2, 0)),
            Origin::Defaults => (None, (3, 0)),
        }
    }

    /// The variable that would set `path` (for suggestions).
    pub fn env_name(path: &[String]) -> String {
        let upper: Vec<String> = path.iter().map(|s| s.to_ascii_uppercase()).collect();
        format!("KPIFLOW_{}", upper.join("__"))
    }
}
