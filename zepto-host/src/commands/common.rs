//! Arguments and helpers shared by several subcommands: link selection, VM level,
//! plugin tables.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use zepto_kernel::heap::{Handle, HeapOps, Parser};
use zepto_kernel::plugins::{
    Bodypart, DigitalPin, Echo, Ping, Plugin, PluginFault, PluginStep, SimSensor,
};
use zepto_kernel::vm::VmHal;

use crate::cli::CliError;
use crate::link::{Link, StreamLink, UdpLink};

/// How to reach the other end (exactly one).
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct LinkArgs {
    /// UDP address (device: listen here; client: the device's address).
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<String>,
    /// Serial device or pty carrying SADLP frames (e.g. /dev/ttyACM0, /dev/pts/5).
    #[arg(long, value_name = "PATH")]
    pub serial: Option<PathBuf>,
    /// TCP byte stream carrying SADLP frames (device: listen; client: connect), e.g.
    /// QEMU's `-serial tcp::4444,server`.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
}

/// Serial line speed.
pub const BAUD: u32 = 115_200;

impl LinkArgs {
    /// Opens the link as the client side.
    pub fn connect(&self) -> Result<Box<dyn Link>, CliError> {
        if let Some(a) = &self.udp {
            return UdpLink::connect(a)
                .map(|l| Box::new(l) as Box<dyn Link>)
                .map_err(|e| CliError::no_answer(format!("udp {a}: {e}")));
        }
        if let Some(p) = &self.serial {
            return StreamLink::serial(&p.to_string_lossy(), BAUD)
                .map(|l| Box::new(l) as Box<dyn Link>)
                .map_err(|e| CliError::no_answer(format!("serial: {e}")));
        }
        if let Some(a) = &self.tcp {
            return StreamLink::tcp_connect(a)
                .map(|l| Box::new(l) as Box<dyn Link>)
                .map_err(|e| CliError::no_answer(format!("tcp {a}: {e}")));
        }
        Err(CliError::input("no link given (--udp, --serial or --tcp)"))
    }

    /// Opens the link as the device side (UDP and TCP listen; serial opens the port).
    pub fn listen(&self) -> Result<Box<dyn Link>, CliError> {
        if let Some(a) = &self.udp {
            return UdpLink::bind(a)
                .map(|l| Box::new(l) as Box<dyn Link>)
                .map_err(|e| CliError::other(format!("udp {a}: {e}")));
        }
        if let Some(p) = &self.serial {
            return StreamLink::serial(&p.to_string_lossy(), BAUD)
                .map(|l| Box::new(l) as Box<dyn Link>)
                .map_err(|e| CliError::other(format!("serial: {e}")));
        }
        if let Some(a) = &self.tcp {
            return StreamLink::tcp_accept(a)
                .map(|l| Box::new(l) as Box<dyn Link>)
                .map_err(|e| CliError::other(format!("tcp {a}: {e}")));
        }
        Err(CliError::input("no link given (--udp, --serial or --tcp)"))
    }
}

/// Zepto VM level.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// Linear programs only.
    One,
    /// Jumps and reply-field conditions.
    Tiny,
    /// Expressions, CALL/RET, SWITCH, loops.
    Small,
    /// PARALLEL.
    #[default]
    Medium,
}

/// Replies with fixed bytes (the `const:HEX` plugin kind).
#[derive(Debug, Clone)]
pub struct ConstPlugin(pub Vec<u8>);

impl Plugin for ConstPlugin {
    fn handle(
        &mut self,
        _command: &mut Parser,
        heap: &mut dyn HeapOps,
        reply: Handle,
        _hal: &mut dyn VmHal,
    ) -> Result<PluginStep, PluginFault> {
        heap.append_reply(reply, &self.0)?;
        Ok(PluginStep::Done)
    }
}

/// One `--plugin ID=KIND[:ARG]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// BODYPART-ID.
    pub id: i16,
    /// Kind name and argument.
    pub kind: PluginKind,
}

/// Plugin kinds the host provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginKind {
    /// Replies `01`.
    Ping,
    /// Replies its command bytes.
    Echo,
    /// Replies fixed bytes.
    Const(Vec<u8>),
    /// Deterministic simulated sensor (u16 readings 200, 201, ..., 50 ms to read).
    Sensor,
    /// Digital pin write/read (`pin:N`).
    Pin(u8),
}

impl std::str::FromStr for PluginSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (id, kind) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}': expected ID=KIND[:ARG]"))?;
        let id: i16 = id
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': bad BODYPART-ID '{id}'"))?;
        let (name, arg) = match kind.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (kind, None),
        };
        let kind = match (name, arg) {
            ("ping", None) => PluginKind::Ping,
            ("echo", None) => PluginKind::Echo,
            ("sensor", None) => PluginKind::Sensor,
            ("const", Some(hex)) => PluginKind::Const(
                crate::cli::parse_hex(hex).map_err(|e| format!("'{s}': {}", e.message))?,
            ),
            ("pin", Some(n)) => PluginKind::Pin(
                n.parse()
                    .map_err(|_| format!("'{s}': bad pin number '{n}'"))?,
            ),
            _ => {
                return Err(format!(
                    "'{s}': unknown plugin kind (ping, echo, sensor, const:HEX, pin:N)"
                ))
            }
        };
        Ok(PluginSpec { id, kind })
    }
}

/// The plugins of a device or VM run: owns the instances.
pub struct PluginSet {
    entries: Vec<(i16, Box<dyn Plugin>)>,
}

impl PluginSet {
    /// Instantiates `specs`.
    pub fn new(specs: &[PluginSpec]) -> Self {
        let entries = specs
            .iter()
            .map(|s| {
                let p: Box<dyn Plugin> = match &s.kind {
                    PluginKind::Ping => Box::new(Ping),
                    PluginKind::Echo => Box::new(Echo),
                    PluginKind::Const(b) => Box::new(ConstPlugin(b.clone())),
                    PluginKind::Sensor => Box::new(SimSensor::new(200, 1, 50)),
                    PluginKind::Pin(n) => Box::new(DigitalPin { pin: *n }),
                };
                (s.id, p)
            })
            .collect();
        Self { entries }
    }

    /// The body part table for the VM.
    pub fn table(&mut self) -> Vec<Bodypart<'_>> {
        self.entries
            .iter_mut()
            .map(|(id, p)| Bodypart::new(*id, p.as_mut()))
            .collect()
    }
}

/// The body parts of `zepto device` and `zepto demo` unless `--plugin` says otherwise:
/// 1 ping, 2 echo, 3 sensor, 4 LED on pin 13.
pub fn default_plugins() -> Vec<PluginSpec> {
    vec![
        PluginSpec {
            id: 1,
            kind: PluginKind::Ping,
        },
        PluginSpec {
            id: 2,
            kind: PluginKind::Echo,
        },
        PluginSpec {
            id: 3,
            kind: PluginKind::Sensor,
        },
        PluginSpec {
            id: 4,
            kind: PluginKind::Pin(13),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_specs() {
        assert_eq!(
            "3=const:0102".parse::<PluginSpec>().unwrap(),
            PluginSpec {
                id: 3,
                kind: PluginKind::Const(vec![1, 2])
            }
        );
        assert_eq!(
            "-1=pin:7".parse::<PluginSpec>().unwrap().kind,
            PluginKind::Pin(7)
        );
        assert!("x=ping".parse::<PluginSpec>().is_err());
        assert!("1=laser"
            .parse::<PluginSpec>()
            .unwrap_err()
            .contains("unknown"));
        assert!("1=const:zz".parse::<PluginSpec>().is_err());
    }
}
