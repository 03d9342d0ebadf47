//! `zepto device`: a simulated Zepto device serving a link until Ctrl-C.

use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use zepto_kernel::hal::Waiter;
use zepto_kernel::nonce_store::BlankStart;
use zepto_kernel::pump::{Device, DeviceConfig, Event, Execution};
use zepto_kernel::sasp::DefaultCipher;
use zepto_kernel::vm::{VmConfig, VmMedium, VmOne, VmSmall, VmTiny};

use crate::cli::CliError;
use crate::commands::common::{
    blank_notice, default_plugins, open_nonce_state, KeyArgs, Level, LinkArgs, PluginSet,
    PluginSpec,
};
use crate::hal::HostHal;
use crate::link::MAX_PACKET;

/// Arguments of `zepto device`.
#[derive(Args, Debug)]
pub struct DeviceArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub link: LinkArgs,
    /// EEPROM image that keeps the nonces across restarts (default: a file per key
    /// in ~/.local/state/zepto).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Zepto VM level.
    #[arg(long, value_enum, default_value_t = Level::Medium)]
    pub level: Level,
    /// Body part: `ID=KIND[:ARG]` with KIND ping, echo, sensor, const:HEX, pin:N
    /// (default: 1=ping 2=echo 3=sensor 4=pin:13).
    #[arg(long = "plugin", value_name = "ID=KIND[:ARG]")]
    pub plugins: Vec<PluginSpec>,
    /// Log each layer (-v), and HAL events too (-vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Heap arena of the host device, in bytes.
pub const HEAP_BYTES: usize = 4096;
/// Heap handles: four for the pump plus one per pseudo-thread.
pub const HEAP_BLOCKS: usize = 12;

/// The VM parameters of the host device.
pub fn vm_config() -> VmConfig {
    VmConfig {
        budget: 256,
        guaranteed_payload: 384,
        max_reply_buffer: 384,
    }
}

/// Host device configuration; blank nonce records start as `blank` says.
pub fn device_config(blank: BlankStart) -> DeviceConfig {
    DeviceConfig {
        mtu: MAX_PACKET as u16,
        blank,
        ..DeviceConfig::default()
    }
}

/// Runs `zepto device`.
pub fn run(a: DeviceArgs) -> Result<(), CliError> {
    let key = a.key.key()?;
    let state = open_nonce_state(a.state.as_deref(), "device", &key)?;
    let link = a.link.listen()?;
    let blank = state.blank;
    let mut hal = HostHal::new(link, state.storage);
    hal.verbose = a.verbose >= 2;
    let specs = if a.plugins.is_empty() {
        default_plugins()
    } else {
        a.plugins.clone()
    };
    crate::elog!(
        "zepto device: serving on {}, VM level {:?}, body parts {}",
        hal.link_name(),
        a.level,
        specs
            .iter()
            .map(|s| format!("{}={:?}", s.id, s.kind))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let cfg = vm_config();
    stop_on_signals()?;
    match a.level {
        Level::One => serve(VmOne::new(cfg), &key, &specs, &mut hal, a.verbose, blank),
        Level::Tiny => serve(
            VmTiny::<8>::new(cfg),
            &key,
            &specs,
            &mut hal,
            a.verbose,
            blank,
        ),
        Level::Small => serve(
            VmSmall::<8, 32>::new(cfg),
            &key,
            &specs,
            &mut hal,
            a.verbose,
            blank,
        ),
        Level::Medium => serve(
            VmMedium::<8, 32, 8>::new(cfg),
            &key,
            &specs,
            &mut hal,
            a.verbose,
            blank,
        ),
    }
}

/// Serves until Ctrl-C (or until the link fails for good); blank nonce records
/// start as `blank` says.
pub fn serve<V: Execution>(
    vm: V,
    key: &[u8; 16],
    specs: &[PluginSpec],
    hal: &mut HostHal,
    verbose: u8,
    blank: BlankStart,
) -> Result<(), CliError> {
    let mut plugins = PluginSet::new(specs);
    let mut table = plugins.table();
    let mut dev = Device::<V, DefaultCipher, HEAP_BYTES, HEAP_BLOCKS>::new(
        key,
        vm,
        &mut table,
        device_config(blank),
        hal,
    )
    .map_err(|e| {
        let state = hal
            .storage
            .path()
            .map_or_else(String::new, |p| format!(" (nonce state {})", p.display()));
        CliError::other(format!("device start: {e}{state}"))
    })?;
    if let Some(n) = blank_notice(&hal.storage, dev.nonces()) {
        crate::elog!("zepto device: {n}");
    }
    let mut failure: Option<String> = None;
    loop {
        let mut w = dev.poll(hal);
        if verbose > 0 {
            for e in dev.events() {
                crate::elog!("{}", describe_event(e));
            }
        }
        if let Some(f) = hal.storage.failure.take() {
            // Once per new reason: a full disk would otherwise fail silently.
            if failure.as_ref() != Some(&f) {
                crate::elog!("zepto device: nonce state: {f}; packets are dropped meanwhile");
            }
            failure = Some(f);
        }
        if STOP.load(Ordering::Relaxed) {
            // A clean stop: persist the exact nonces so the next start needs no
            // resynchronisation with the clients.
            dev.checkpoint(hal)
                .map_err(|e| CliError::other(format!("saving nonces: {e}")))?;
            crate::elog!("zepto device: stopped, nonces saved");
            return Ok(());
        }
        if let Some(e) = &hal.link_error {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                return Err(CliError::other(format!("link closed: {e}")));
            }
        }
        // Look at the stop flag at least twice a second.
        let t = w.timeout_ms.map_or(STOP_POLL_MS, |t| t.min(STOP_POLL_MS));
        w.timeout_ms = Some(t);
        hal.wait_for(&w);
    }
}

/// Set by Ctrl-C (SIGINT) or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

/// Longest wait before the stop flag is checked again.
const STOP_POLL_MS: u32 = 500;

/// Makes Ctrl-C and SIGTERM stop the device cleanly (see [`serve`]).
pub fn stop_on_signals() -> Result<(), CliError> {
    ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed))
        .map_err(|e| CliError::other(format!("signal handler: {e}")))
}

/// One pump event as a log line.
pub fn describe_event(e: &Event) -> String {
    match e {
        Event::Received(n) => format!("bus   <- {n} bytes"),
        Event::Up(layer, out) => format!("{:<5} -> {out:?}", format!("{layer:?}").to_uppercase()),
        Event::ProgramStarted(n) => format!("VM    start, program {n} bytes"),
        Event::VmWaiting(w) => format!(
            "VM    waiting{}{}",
            w.timeout_ms.map(|t| format!(" {t} ms")).unwrap_or_default(),
            if w.pins().next().is_some() {
                " or pins"
            } else {
                ""
            }
        ),
        Event::VmDone(None) => "VM    done".to_string(),
        Event::VmDone(Some(c)) => format!(
            "VM    exception {}",
            crate::describe::exception_name(u16::from(*c))
        ),
        Event::Sent(n) => format!("bus   -> {n} bytes"),
        Event::Dropped(e) => format!("drop  ({e})"),
        Event::Reinit => "stack re-initialised".to_string(),
    }
}
