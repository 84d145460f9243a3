use std::process::ExitCode;

use clap::Parser;
use staging_refresh::cli::{self, Cli};
use staging_refresh::error::exit_for;
use staging_refresh::logging;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    match runtime.block_on(cli::run(cli)) {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("error: {}", logging::one_line(&format!("{err:#}")));
            exit_for(&err).into()
        }
    }
}
