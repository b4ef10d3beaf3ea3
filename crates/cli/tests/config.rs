//! `kpiflow run`'s configuration through the real binary: `--print-config`
//! shows the merged settings with secrets masked, invalid settings exit 2
//! listing each with its source, and `run` itself is not wired yet.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The binary with none of the caller's `KPIFLOW_*` variables.
fn kpiflow(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kpiflow"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KPIFLOW_") {
            command.env_remove(name);
        }
    }
    command.args(args).envs(env.iter().copied());
    command.output().expect("run kpiflow")
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "kpiflow-config-bin-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn print_config_shows_the_merged_settings_with_secrets_masked() {
    let file = TempFile::new(
        "print",
        r#"[kafka]
brokers = "file:9092"
group = "from-file"
[checkpoint]
interval = "1s"
keep = 3
[storage.s3]
access_key_id = "AKIA-VISIBLE"
secret_access_key = "hunter2"
"#,
    );
    let output = kpiflow(
        &[
            "run",
            "--config",
            file.path(),
            "--group",
            "from-flag",
            "-X",
            "sasl.password=pw-123",
            "--print-config",
        ],
        &[
            ("KPIFLOW_CHECKPOINT__INTERVAL", "5s"),
            ("KPIFLOW_KAFKA__GROUP", "from-env"),
            ("KPIFLOW_STORAGE__S3__SESSION_TOKEN", "tok-456"),
        ],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    for secret in ["hunter2", "pw-123", "tok-456"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}"
        );
    }
    let printed: toml::Table = stdout.parse().expect("--print-config prints TOML");
    let at = |path: &str| {
        let mut value = &toml::Value::Table(printed.clone());
        for key in path.split('/') {
            value = &value[key];
        }
        value.clone()
    };
    assert_eq!(at("kafka/brokers").as_str(), Some("file:9092"));
    assert_eq!(at("kafka/group").as_str(), Some("from-flag"));
    assert_eq!(at("checkpoint/interval").as_str(), Some("5s"));
    assert_eq!(at("checkpoint/keep").as_integer(), Some(3));
    assert_eq!(
        at("storage/s3/access_key_id").as_str(),
        Some("AKIA-VISIBLE")
    );
    assert_eq!(at("storage/s3/secret_access_key").as_str(), Some("***"));
    assert_eq!(at("storage/s3/session_token").as_str(), Some("***"));
    assert_eq!(at("kafka/properties/sasl.password").as_str(), Some("***"));
    assert_eq!(at("retention/raw").as_str(), Some("forever"));
    assert_eq!(at("data").as_str(), Some("./kpiflow-data"));
}

#[test]
fn invalid_settings_exit_2_each_on_its_own_line_with_its_source() {
    let file = TempFile::new(
        "invalid",
        "[kafka]\nbrokers = \"k:9092\"\n\n[checkpoint]\ninterval = \"10x\"\n",
    );
    let output = kpiflow(
        &[
            "run",
            "--config",
            file.path(),
            "--pipeline-id",
            "no spaces please",
            "--print-config",
        ],
        &[("KPIFLOW_CHECKPOINT__KEEP", "1")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0], "error: invalid configuration (3 problems):",
        "{stderr}"
    );
    let expected = [
        format!(
            "  {}:5: checkpoint.interval: \"10x\" is not a duration",
            file.path()
        ),
        "  KPIFLOW_CHECKPOINT__KEEP: checkpoint.keep: 1: keep at least 2".to_owned(),
        "  --pipeline-id: pipeline.id: \"no spaces please\" is not a pipeline id".to_owned(),
    ];
    for prefix in &expected {
        assert!(
            lines[1..].iter().any(|l| l.starts_with(prefix.as_str())),
            "missing {prefix:?} in:\n{stderr}"
        );
    }
    assert_eq!(lines.len(), 4, "{stderr}");
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let output = kpiflow(
        &[
            "run",
            "--config",
            "/nonexistent/kpiflow.toml",
            "--brokers",
            "k:9092",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--config /nonexistent/kpiflow.toml: cannot read the configuration file"),
        "{stderr}"
    );
}
