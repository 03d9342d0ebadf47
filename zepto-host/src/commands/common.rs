//! Arguments and helpers shared by several subcommands: link selection, VM level,
//! plugin tables.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use zepto_kernel::heap::{Handle, Heap, Parser};
use zepto_kernel::nonce_store::{self, key_id, BlankStart, NonceStore};
use zepto_kernel::plugins::{
    Bodypart, DigitalPin, Echo, Ping, Plugin, PluginFault, PluginStep, SimSensor,
};
use zepto_kernel::sasp::DefaultCipher;
use zepto_kernel::vm::VmHal;

use crate::cli::CliError;
use crate::link::{Link, StreamLink, UdpLink};
use crate::storage::{FileStorage, Found};

/// The 128-bit key shared with the other end.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// The key as 32 hex digits (or from $ZEPTO_KEY). On the command line it shows
    /// in `ps`: prefer --key-file or ZEPTO_KEY.
    #[arg(long, env = "ZEPTO_KEY", hide_env_values = true, value_name = "HEX")]
    pub key: Option<String>,
    /// A file holding the key as 32 hex digits (readable by its owner only).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl KeyArgs {
    /// The key: from --key-file if given, else --key or $ZEPTO_KEY.
    pub fn key(&self) -> Result<[u8; 16], CliError> {
        if let Some(p) = &self.key_file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::input(format!("key file {}: {e}", p.display())))?;
            if let Ok(meta) = std::fs::metadata(p) {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    crate::elog!(
                        "zepto: warning: key file {} can be read by others (chmod 600 it)",
                        p.display()
                    );
                }
            }
            return crate::cli::parse_key(text.trim())
                .map_err(|e| CliError::input(format!("key file {}: {}", p.display(), e.message)));
        }
        match &self.key {
            Some(k) => crate::cli::parse_key(k),
            None => Err(CliError::input(
                "no key: give --key-file FILE, set ZEPTO_KEY, or give --key HEX",
            )),
        }
    }
}

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
    /// Device only: create a pseudo-terminal, print its path, and serve SADLP frames
    /// on it (clients use `--serial PATH`).
    #[arg(long)]
    pub pty: bool,
}

/// Serial line speed.
pub const BAUD: u32 = 115_200;

/// Pause between two tries of a refused connection.
const RETRY_EVERY: Duration = Duration::from_millis(100);

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
        if self.pty {
            return Err(CliError::input(
                "--pty is for `zepto device`; use --serial PATH",
            ));
        }
        Err(CliError::input("no link given (--udp, --serial or --tcp)"))
    }

    /// Like [`LinkArgs::connect`], but a TCP connection that is refused (the device
    /// is still starting) is tried again until `timeout` has passed.
    pub fn connect_within(&self, timeout: Duration) -> Result<Box<dyn Link>, CliError> {
        let Some(a) = &self.tcp else {
            return self.connect();
        };
        let start = Instant::now();
        loop {
            match StreamLink::tcp_connect(a) {
                Ok(l) => return Ok(Box::new(l)),
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && start.elapsed() + RETRY_EVERY < timeout =>
                {
                    std::thread::sleep(RETRY_EVERY);
                }
                Err(e) => return Err(CliError::no_answer(format!("tcp {a}: {e}"))),
            }
        }
    }

    /// Opens the link as the device side (UDP and TCP listen; serial opens the port;
    /// `--pty` makes a pseudo-terminal).
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
            return StreamLink::tcp_server(a)
                .map(|(l, _)| Box::new(l) as Box<dyn Link>)
                .map_err(|e| CliError::other(format!("tcp {a}: {e}")));
        }
        if self.pty {
            return crate::link::open_pty()
                .map(|(l, _)| Box::new(l) as Box<dyn Link>)
                .map_err(|e| CliError::other(format!("pty: {e}")));
        }
        Err(CliError::input(
            "no link given (--udp, --serial, --tcp or --pty)",
        ))
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
        heap: &mut Heap<'_>,
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

/// Where state files live unless `--state` says otherwise: `$ZEPTO_STATE_DIR`, else
/// `$XDG_STATE_HOME/zepto`, else `~/.local/state/zepto`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ZEPTO_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("zepto");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/state/zepto")
}

pub use zepto_kernel::nonce_store::{FLOOR_EPOCH_MS, FLOOR_SHIFT};

/// Where a new or lost nonce state starts: milliseconds since [`FLOOR_EPOCH_MS`]
/// times 32 ([`nonce_store::clock_floor`]). It passes every nonce used under the key
/// before, as long as the clock is right and fewer than 32,000 nonces a second were
/// used on average since that state started; it reaches `RANDOM_START` (2^46, where
/// devices with blank records start) in 2093 (`docs/security.md` has the arithmetic).
pub fn clock_floor() -> Result<u64, CliError> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    floor_at(ms)
}

/// The floor at `ms` milliseconds since 1970. A clock that reads before 2024 or
/// past the floor's end (2093, when it would reach `RANDOM_START`) is refused: every
/// start would be the same value there.
pub fn floor_at(ms: u64) -> Result<u64, CliError> {
    let floor = nonce_store::clock_floor(ms);
    floor.ok_or_else(|| {
        CliError::other(
            "the system clock reads a date before 2024 or after 2093: a new nonce state \
             cannot start safely from it (set the clock, then try again)",
        )
    })
}

/// The nonce state of one end: its storage (which knows its file) and how a blank
/// one starts.
pub struct NonceState {
    /// The EEPROM image (file-backed).
    pub storage: FileStorage,
    /// How blank records start: at the clock floor.
    pub blank: BlankStart,
}

/// A line for stderr when `nonces` started blank on `storage` (`None` otherwise).
pub fn blank_notice(storage: &FileStorage, nonces: &NonceStore) -> Option<String> {
    if !nonces.started_blank() {
        return None;
    }
    let what = match storage.found {
        Found::Empty => "was empty",
        Found::Present => "held no record of this key",
        Found::Missing | Found::Memory => "is new",
    };
    let path = storage
        .path()
        .map_or_else(|| "in memory".to_string(), |p| p.display().to_string());
    Some(format!(
        "nonce state {path} {what}: nonces start from the clock at {}",
        nonces.nfs()
    ))
}

/// Opens the state file holding the SASP nonces of `role` ("device" or "client")
/// for `key`: `explicit` if given, else a file per role and key in [`state_dir`].
/// Processes may share it. A missing or empty file starts at the [`clock_floor`];
/// a file that is damaged or holds another key's nonces is refused with what to do.
pub fn open_nonce_state(
    explicit: Option<&Path>,
    role: &str,
    key: &[u8; 16],
) -> Result<NonceState, CliError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = state_dir();
            std::fs::create_dir_all(&dir)
                .map_err(|e| CliError::other(format!("state folder {}: {e}", dir.display())))?;
            let id = zepto_kernel::saccp::checksum(key);
            dir.join(format!("{role}-{}.state", crate::cli::hex(&id[..4])))
        }
    };
    let shown = path.display();
    let move_away = format!(
        "move it away (mv {shown} {shown}.bad) to start a new state from the clock, or \
         give another file with --state"
    );
    let mut storage = FileStorage::open(&path)
        .map_err(|e| CliError::other(format!("state file {shown}: {e}; {move_away}")))?;
    if storage.found == Found::Present {
        let mine = key_id::<DefaultCipher>(key).map_err(|e| CliError::other(e.to_string()))?;
        let keys = nonce_store::stored_keys(&mut storage, 0)
            .map_err(|e| CliError::other(format!("state file {shown}: {e}")))?;
        match keys {
            // (Read again under the lock: a file deleted or emptied meanwhile is new.)
            _ if storage.found != Found::Present => {}
            [None, None] => {
                return Err(CliError::other(format!(
                    "state file {shown} is damaged (no valid nonce record); {move_away}"
                )))
            }
            _ if !keys.contains(&Some(mine)) => {
                return Err(CliError::other(format!(
                    "state file {shown} holds the nonces of another key; give this key its \
                     own file with --state"
                )))
            }
            _ => {}
        }
    }
    Ok(NonceState {
        storage,
        blank: BlankStart::Floor(clock_floor()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_floor_never_saturates() {
        // 2024-01-01 is 0; a millisecond later is 32 further on.
        assert_eq!(floor_at(FLOOR_EPOCH_MS).unwrap(), 0);
        assert_eq!(floor_at(FLOOR_EPOCH_MS + 1).unwrap(), 32);
        // 2093-09-01 is still below the random region; 2094-01-01 is refused, not
        // clamped (every start would be the same value), as is 2023.
        let y2093 = 3_902_601_600_000;
        assert!(floor_at(y2093).unwrap() < nonce_store::RANDOM_START);
        let y2094 = 3_913_142_400_000;
        assert!(floor_at(y2094).is_err());
        assert!(floor_at(y2094 + 1).is_err());
        assert!(floor_at(u64::MAX).is_err());
        assert!(floor_at(FLOOR_EPOCH_MS - 1).is_err());
    }

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
