//! `--print-config` output and the example `kpiflow.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

#[test]
fn printed_settings_mask_secrets_and_load_back_the_same() {
    let file = TempFile::new(
        "secrets",
        r#"data = "file:///var/lib/kpiflow"
[kafka]
brokers = "k:9092"
properties = { "sasl.password" = "pw-123", "sasl.username" = "kpi" }
[storage.s3]
access_key_id = "AKIA1"
secret_access_key = "hunter2"
session_token = "tok-456"
[raw.topics.logistics]
enabled = false
[retention]
late = "30d"
[time_bounds]
min = 2001-02-03T04:05:06Z
"#,
    );
    let config = load_with_env(&args(&["--config", file.path()]), env(&[])).unwrap();
    let printed = config.to_toml();
    for secret in ["pw-123", "hunter2", "tok-456"] {
        assert!(!printed.contains(secret), "{printed}");
        assert!(!format!("{config:?}").contains(secret));
    }
    assert!(printed.contains("secret_access_key = \"***\""), "{printed}");
    assert!(printed.contains("\"sasl.password\" = \"***\""), "{printed}");
    assert!(printed.contains("\"sasl.username\" = \"kpi\""), "{printed}");

    let again = TempFile::new("printed", &printed);
    let reloaded = load_with_env(&args(&["--config", again.path()]), env(&[])).unwrap();
    let mut expected = config.clone();
    expected.storage.s3.secret_access_key = Some(Secret::new("***"));
    expected.storage.s3.session_token = Some(Secret::new("***"));
    expected
        .kafka
        .properties
        .0
        .insert("sasl.password".into(), "***".into());
    assert_eq!(reloaded, expected, "printed:\n{printed}");
    assert_eq!(reloaded.data, DataSpec::Dir("/var/lib/kpiflow".into()));
    // A TOML date-time works as well as a string.
    assert_eq!(
        values::format_time(&reloaded.time_bounds.min),
        "2001-02-03T04:05:06Z"
    );
    assert_eq!(
        reloaded.retention.of(TableKind::Late),
        Some(Duration::from_secs(30 * 86_400))
    );
}

#[test]
fn the_example_file_loads_and_shows_every_setting_with_its_true_default() {
    let (path, text) = example();
    let as_is = load_with_env(&args(&["--config", path.to_str().unwrap()]), env(&[])).unwrap();
    let defaults = load_with_env(&args(&["--brokers", "127.0.0.1:9092"]), env(&[])).unwrap();
    assert_eq!(as_is, defaults);

    // `#key = value` lines are the defaults: uncommented, nothing changes.
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let file = TempFile::new("example-uncommented", &uncommented);
    let all_set = load_with_env(&args(&["--config", file.path()]), env(&[])).unwrap();
    assert_eq!(all_set, defaults);

    // And every setting is there (S3 ones as examples).
    let mut shown = Vec::new();
    leaves(&uncommented.parse().unwrap(), "", &mut shown);
    let mut settings = Vec::new();
    leaves(&defaults.to_toml().parse().unwrap(), "", &mut settings);
    shown.sort();
    settings.sort();
    assert_eq!(shown, settings);
    for s3 in [
        "endpoint",
        "region",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "allow_http",
    ] {
        assert!(
            text.contains(&format!("# {s3} = ")),
            "kpiflow.toml lacks storage.s3.{s3}"
        );
    }
}

fn example() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kpiflow.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// Leaf keys of a TOML table, dotted.
fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let key = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) => leaves(inner, &format!("{key}."), out),
            _ => out.push(key),
        }
    }
}
