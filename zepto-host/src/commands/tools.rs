//! Offline tools: `zepto asm`, `zepto disasm`, `zepto vm`, `zepto decode`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::CliError;
use crate::commands::common::{Level, PluginSpec};

/// `zepto asm [FILE|-]`
#[derive(Args, Debug)]
pub struct AsmArgs {
    /// Assembly source (`-` or nothing: standard input).
    pub file: Option<PathBuf>,
}

/// `zepto disasm HEX`
#[derive(Args, Debug)]
pub struct DisasmArgs {
    /// Program bytes as hex.
    pub hex: String,
}

/// `zepto vm --hex PROGRAM`
#[derive(Args, Debug)]
pub struct VmArgs {
    /// Program bytes as hex.
    #[arg(long)]
    pub hex: String,
    /// VM level.
    #[arg(long, value_enum, default_value_t = Level::Medium)]
    pub level: Level,
    /// Body part: ID=KIND[:ARG] with KIND ping, echo, sensor, const:HEX, pin:N.
    #[arg(long = "plugin", value_name = "ID=KIND[:ARG]")]
    pub plugins: Vec<PluginSpec>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `zepto decode --key HEX PACKETHEX`
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The 128-bit key, 32 hex digits.
    #[arg(long)]
    pub key: String,
    /// Who sent the packet.
    #[arg(long, value_enum, default_value_t = Sender::Client)]
    pub from: Sender,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The captured packet (SASP packet, or a SADLP frame from a byte link).
    pub packet: String,
}

/// The sender of a captured packet.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The device sent it.
    Device,
    /// The client sent it.
    Client,
}

/// Runs `zepto asm`.
pub fn asm(a: AsmArgs) -> Result<(), CliError> {
    let _ = a;
    Err(CliError::other("asm: not available in this build"))
}

/// Runs `zepto disasm`.
pub fn disasm(a: DisasmArgs) -> Result<(), CliError> {
    let _ = a;
    Err(CliError::other("disasm: not available in this build"))
}

/// Runs `zepto vm`.
pub fn vm(a: VmArgs) -> Result<(), CliError> {
    let _ = a;
    Err(CliError::other("vm: not available in this build"))
}

/// Runs `zepto decode`.
pub fn decode(a: DecodeArgs) -> Result<(), CliError> {
    let _ = a;
    Err(CliError::other("decode: not available in this build"))
}
