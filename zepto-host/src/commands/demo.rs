//! `zepto demo`: a simulated device and a client on loopback, with a fresh key, and a
//! short tour of what programs can do.

use std::time::{Duration, Instant};
use zepto_kernel::nonce_store::{key_id, BlankStart, NonceStore};
use zepto_kernel::sasp::DefaultCipher;

use clap::Args;
use zepto_kernel::saccp::client::decode_reply;
use zepto_kernel::vm::VmMedium;

use crate::cli::{hex, CliError};
use crate::commands::common::default_plugins;
use crate::commands::device::{serve, vm_config};
use crate::commands::send::Session;
use crate::describe;
use crate::hal::HostHal;
use crate::link::{Link, UdpLink};
use crate::storage::FileStorage;

/// Arguments of `zepto demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Also print each packet's size and each round trip's time.
    #[arg(short, long)]
    pub verbose: bool,
}

/// One stop of the tour: what it shows and the program, in assembly.
pub struct Stop {
    /// Heading.
    pub title: &'static str,
    /// Assembly source.
    pub source: &'static str,
}

/// The tour. Body parts: 1 ping, 2 echo, 3 simulated sensor (u16, 50 ms per
/// reading), 4 LED on pin 13.
pub const TOUR: &[Stop] = &[
    Stop {
        title: "Ping: EXEC the ping plugin (body part 1)",
        source: "EXEC 1 \"\"\n",
    },
    Stop {
        title: "DEVICECAPS: what this device can do",
        source: "DEVICECAPS 1 2 3 4 5 6\n",
    },
    Stop {
        title: "Sensor read with a condition: LED on if the reading is above 150",
        source: "\
    EXEC 3 \"\"                        ; read the sensor (u16)
    JMPIFREPLYFIELD_GT -1 U16 150 hot
    EXEC 4 \"00\"                      ; LED off
    EXIT ISLAST
hot:
    EXEC 4 \"01\"                      ; LED on
",
    },
    Stop {
        title: "A loop: three sensor readings, counted on the expression stack",
        source: "\
    PUSHEXPR_CONSTANT 0
again:
    EXEC 3 \"\"
    INCANDJMPIF @1 3 again            ; counter += 1; loop while < 3
",
    },
    Stop {
        title: "PARALLEL: sensor and echo run side by side; replies keep declaration order",
        source: "\
    PARALLEL {
    EXEC 3 \"\"     ; thread 1: sensor (50 ms)
    } {
    EXEC 2 \"cafe\" ; thread 2: echo (at once)
    }
",
    },
    Stop {
        title: "SLEEP: the device waits 200 ms (and keeps serving packets meanwhile)",
        source: "\
    PUSHREPLY \"01\"
    SLEEP 200
    PUSHREPLY \"02\"
",
    },
];

/// Runs `zepto demo`.
pub fn run(a: DemoArgs) -> Result<(), CliError> {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| CliError::other(format!("random key: {e}")))?;
    let dev_link = UdpLink::bind("127.0.0.1:0")?;
    let addr = dev_link.local_addr()?.to_string();
    // A new key: both ends' nonce records may start at 0.
    let mut dev_storage = FileStorage::in_memory();
    let cfg = crate::commands::device::device_config(BlankStart::Refuse);
    zepto_kernel::pump::provision_new_key::<DefaultCipher, _>(&mut dev_storage, &cfg, &key)
        .map_err(|e| CliError::other(e.to_string()))?;
    let mut dev_hal = HostHal::new(Box::new(dev_link), dev_storage);
    std::thread::spawn(move || {
        let specs = default_plugins();
        let _ = serve(
            VmMedium::<8, 32, 8>::new(vm_config()),
            &key,
            &specs,
            &mut dev_hal,
            0,
            BlankStart::Refuse,
        );
    });

    let client_link: Box<dyn Link> = Box::new(UdpLink::connect(&addr)?);
    let mut client_storage = FileStorage::in_memory();
    let kid = key_id::<DefaultCipher>(&key).map_err(|e| CliError::other(e.to_string()))?;
    NonceStore::provision(&mut client_storage, 0, kid, 0, 0)
        .map_err(|e| CliError::other(e.to_string()))?;
    let hal = HostHal::new(client_link, client_storage);
    let mut session = Session::new(&key, hal, 3000, BlankStart::Refuse)?;

    crate::outln!("Zepto demo: a simulated device (Zepto VM Medium) on udp {addr},")?;
    crate::outln!(
        "a client with a fresh AES-128 key {}, and six programs.",
        hex(&key)
    )?;
    crate::outln!("Every packet is encrypted (SASP), reliably delivered (SAGDP) and carries a")?;
    crate::outln!(
        "program (SACCP) for the Zepto VM. Body parts: 1 ping, 2 echo, 3 sensor, 4 LED."
    )?;
    let started = Instant::now();
    for (i, stop) in TOUR.iter().enumerate() {
        let program = crate::asm::assemble(stop.source)
            .map_err(|e| CliError::other(format!("tour program {}: {e}", i + 1)))?;
        crate::outln!()?;
        crate::outln!("{}. {}", i + 1, stop.title)?;
        // Labels flush left, instructions indented, PARALLEL blocks one step more.
        let mut depth = 1usize;
        for line in stop.source.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line.starts_with('}') {
                depth = depth.saturating_sub(1);
            }
            let indent = if line.ends_with(':') { 0 } else { 4 * depth };
            crate::outln!("     | {:indent$}{line}", "")?;
            if line.ends_with('{') {
                depth += 1;
            }
        }
        crate::outln!("     program: {} bytes: {}", program.len(), hex(&program))?;
        let t = Instant::now();
        let reply = session.exchange(&program, Duration::from_secs(3))?;
        let rtt = t.elapsed();
        let decoded = decode_reply(&reply).map_err(|e| CliError::other(e.to_string()))?;
        for line in describe::reply_text(&decoded) {
            crate::outln!("  -> {line}")?;
        }
        if a.verbose {
            crate::outln!("     round trip {:.1} ms", rtt.as_secs_f64() * 1000.0)?;
        }
    }
    crate::outln!()?;
    crate::outln!(
        "Done: {} programs in {:.2} s. Next: `zepto device --help`, `zepto send --help`.",
        TOUR.len(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}
