//! `kpiflow run`: the pipeline against a real Kafka cluster and object
//! store, configured by `config` (`--print-config` shows the settings).

use std::process::ExitCode;

use crate::args::RunArgs;
use crate::config::{self, ConfigErrors, RunConfig};

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let loaded: Result<RunConfig, ConfigErrors> = config::load(&args);
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            // A usage error, like a bad flag: exit 2.
            eprintln!("error: {errors}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!("kpiflow run: storage wiring not built yet")
}
