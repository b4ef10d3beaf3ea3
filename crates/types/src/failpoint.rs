//! Test-only crash points in the commit protocol. `KPIFLOW_FAILPOINT=name`
//! (or `name@epoch`) makes the process abort the first time it reaches the
//! named point (of that epoch), as a `kill -9` there would; the crash test
//! uses one per step. Unset (always, outside tests) it costs one load.

use std::sync::OnceLock;

/// The armed point, read once from the environment.
fn armed() -> Option<&'static (String, Option<u64>)> {
    static ARMED: OnceLock<Option<(String, Option<u64>)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("KPIFLOW_FAILPOINT").ok()?;
            match spec.split_once('@') {
                Some((name, epoch)) => Some((name.to_owned(), epoch.parse().ok())),
                None => Some((spec, None)),
            }
        })
        .as_ref()
}

/// Aborts the process if `name` (at `epoch`) is the armed point.
pub fn hit(name: &str, epoch: u64) {
    if let Some((armed, at)) = armed()
        && armed == name
        && at.is_none_or(|at| at == epoch)
    {
        eprintln!("kpiflow: failpoint {name} reached at epoch {epoch}: aborting");
        std::process::abort();
    }
}
