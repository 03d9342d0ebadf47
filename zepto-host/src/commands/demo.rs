//! `zepto demo`.

use clap::Args;

use crate::cli::CliError;

/// Arguments of `zepto demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {}

/// Runs `zepto demo`.
pub fn run(a: DemoArgs) -> Result<(), CliError> {
    let _ = a;
    Err(CliError::other("demo: not available in this build"))
}
