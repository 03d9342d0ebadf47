//! `zepto send`.

use clap::Args;

use crate::cli::CliError;

/// Arguments of `zepto send`.
#[derive(Args, Debug)]
pub struct SendArgs {}

/// Runs `zepto send`.
pub fn run(a: SendArgs) -> Result<(), CliError> {
    let _ = a;
    Err(CliError::other("send: not available in this build"))
}
