//! `zepto device`.

use clap::Args;

use crate::cli::CliError;

/// Arguments of `zepto device`.
#[derive(Args, Debug)]
pub struct DeviceArgs {}

/// Runs `zepto device`.
pub fn run(a: DeviceArgs) -> Result<(), CliError> {
    let _ = a;
    Err(CliError::other("device: not available in this build"))
}
