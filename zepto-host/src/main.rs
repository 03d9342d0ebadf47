//! `zepto`: run a simulated Zepto device, talk to real ones, assemble programs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zepto_host::commands;

/// Zepto: run a simulated SmartAnthill device, talk to real ones over UDP, serial or
/// TCP, and assemble, run and dissect Zepto VM programs.
#[derive(Parser, Debug)]
#[command(name = "zepto", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a simulated device and a client on loopback and take a short tour.
    Demo(commands::demo::DemoArgs),
    /// Run a simulated device until Ctrl-C.
    Device(commands::device::DeviceArgs),
    /// Send one program to a device, reliably, and print the reply.
    Send(commands::send::SendArgs),
    /// Assemble a program (file or stdin) and print its bytes as hex.
    Asm(commands::tools::AsmArgs),
    /// Disassemble program bytes given as hex.
    Disasm(commands::tools::DisasmArgs),
    /// Run one program locally in the Zepto VM with built-in plugins.
    Vm(commands::tools::VmArgs),
    /// Dissect one captured packet layer by layer.
    Decode(commands::decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Demo(a) => commands::demo::run(a),
        Command::Device(a) => commands::device::run(a),
        Command::Send(a) => commands::send::run(a),
        Command::Asm(a) => commands::tools::asm(a),
        Command::Disasm(a) => commands::tools::disasm(a),
        Command::Vm(a) => commands::tools::vm(a),
        Command::Decode(a) => commands::decode::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_closed_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.message.lines() {
                zepto_host::elog!("zepto: {line}");
            }
            ExitCode::from(u8::try_from(e.code).unwrap_or(1))
        }
    }
}
