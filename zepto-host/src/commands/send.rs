//! `zepto send`: the client. Sends one program reliably and prints the reply.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use zepto_kernel::client::{Client, ClientConfig, ClientEvent};
use zepto_kernel::hal::{Clock, PacketBus, Waiter, WaitingFor};
use zepto_kernel::nonce_store::BlankStart;
use zepto_kernel::saccp::client::{decode_reply, Reply};
use zepto_kernel::sagdp;
use zepto_kernel::sasp::DefaultCipher;

use crate::cli::{parse_hex, CliError};
use crate::commands::common::{blank_notice, open_nonce_state, KeyArgs, LinkArgs};
use crate::describe;
use crate::hal::HostHal;
use crate::link::MAX_PACKET;
use crate::storage::Found;

/// Arguments of `zepto send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub program: ProgramArgs,
    /// Print the reply as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many milliseconds without a reply.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub timeout: u64,
    /// EEPROM image that keeps this client's nonces (default: a file per key in
    /// ~/.local/state/zepto).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

/// The program to send (exactly one).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ProgramArgs {
    /// Assembly source file (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub asm: Option<PathBuf>,
    /// Program bytes as hex.
    #[arg(long, value_name = "PROGRAM")]
    pub hex: Option<String>,
}

impl ProgramArgs {
    /// The program bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, CliError> {
        if let Some(h) = &self.hex {
            return parse_hex(h);
        }
        if let Some(p) = &self.asm {
            let src = if p.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(p)
                    .map_err(|e| CliError::input(format!("{}: {e}", p.display())))?
            };
            return crate::asm::assemble(&src)
                .map_err(|e| CliError::input(format!("{}: {e}", p.display())));
        }
        Err(CliError::input("no program given (--asm or --hex)"))
    }
}

/// A client session on one link.
pub struct Session {
    hal: HostHal,
    client: Client<DefaultCipher, 2048, 4>,
}

impl Session {
    /// A client for `key` on the link in `hal` (its storage holds the nonces; blank
    /// records start as `blank` says).
    pub fn new(
        key: &[u8; 16],
        mut hal: HostHal,
        timeout_ms: u64,
        blank: BlankStart,
    ) -> Result<Self, CliError> {
        // Resend quickly at first, and often enough to cover the whole timeout.
        let timing = sagdp::Config {
            initial_timeout_ms: 300,
            max_timeout_ms: 2000,
            max_resends: Some(u8::try_from(timeout_ms / 300 + 2).unwrap_or(u8::MAX)),
        };
        let cfg = ClientConfig {
            blank,
            timing,
            ..ClientConfig::default()
        };
        let client = Client::new(key, &mut hal, cfg).map_err(|e| {
            let state = hal
                .storage
                .path()
                .map_or_else(String::new, |p| format!(" {}", p.display()));
            CliError::other(format!("client nonce state{state}: {e}"))
        })?;
        // A first use is normal; an emptied or foreign file is worth a line.
        if hal.storage.found != Found::Missing {
            if let Some(n) = blank_notice(&hal.storage, client.nonces()) {
                eprintln!("zepto: {n}");
            }
        }
        Ok(Self { hal, client })
    }

    /// Sends `program` and waits up to `timeout` for the reply; returns the SACCP reply.
    pub fn exchange(&mut self, program: &[u8], timeout: Duration) -> Result<Vec<u8>, CliError> {
        let start = Instant::now();
        let packet = self
            .client
            .send_program(&mut self.hal, program)
            .map_err(|e| CliError::input(format!("cannot build the command: {e}")))?
            .to_vec();
        self.transmit(&packet)?;
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(CliError::no_answer(format!(
                    "no reply from {} within {} ms (is the device running, and is the key right? \
                     a device drops packets it cannot authenticate)",
                    self.hal.link_name(),
                    timeout.as_millis()
                )));
            }
            let now = self.hal.now_ms();
            let resend_in = self.client.next_timeout_ms(now).unwrap_or(u64::MAX);
            let wait = left.min(Duration::from_millis(resend_in));
            let w = WaitingFor::time(wait.as_millis().min(u128::from(u32::MAX)) as u32);
            self.hal.wait_for(&w);
            if let Some(e) = self
                .hal
                .link_error
                .take()
                .filter(|e| e.kind() != std::io::ErrorKind::ConnectionRefused)
            {
                // (A refused datagram means nobody listens yet: the resends go on
                // until the timeout.)
                return Err(CliError::no_answer(format!(
                    "{}: {e}",
                    self.hal.link_name()
                )));
            }
            while let Some(n) = self
                .hal
                .receive(0, &mut buf)
                .map_err(|e| CliError::other(e.to_string()))?
            {
                let pkt = buf.get(..n).unwrap_or(&[]).to_vec();
                match self.client.receive(&mut self.hal, &pkt) {
                    Ok(ClientEvent::Reply) => {
                        let reply = self.client.reply().to_vec();
                        let _ = self.client.checkpoint(&mut self.hal);
                        return Ok(reply);
                    }
                    Ok(ClientEvent::Send) => {
                        let out = self.client.outgoing().to_vec();
                        self.transmit(&out)?;
                    }
                    Ok(ClientEvent::Resync) => {
                        // Our "old nonce" answer moves the device's counter up; the
                        // command goes again now so the device resends its reply.
                        let out = self.client.outgoing().to_vec();
                        self.transmit(&out)?;
                        if let Ok(Some(p)) = self.client.resend_now(&mut self.hal) {
                            let p = p.to_vec();
                            self.transmit(&p)?;
                        }
                    }
                    Ok(ClientEvent::Nothing) | Err(_) => {}
                }
            }
            match self.client.poll(&mut self.hal) {
                Ok(Some(p)) => {
                    let p = p.to_vec();
                    self.transmit(&p)?;
                }
                Ok(None) => {}
                Err(_) => {
                    return Err(CliError::no_answer(format!(
                        "no reply from {} after all resends (is the device running, and is the \
                         key right?)",
                        self.hal.link_name()
                    )))
                }
            }
        }
    }

    fn transmit(&mut self, packet: &[u8]) -> Result<(), CliError> {
        self.hal
            .send(0, packet)
            .map_err(|_| CliError::no_answer(format!("cannot send to {}", self.hal.link_name())))
    }
}

/// Runs `zepto send`.
pub fn run(a: SendArgs) -> Result<(), CliError> {
    let key = a.key.key()?;
    let program = a.program.bytes()?;
    let state = open_nonce_state(a.state.as_deref(), "client", &key)?;
    let timeout = Duration::from_millis(a.timeout);
    let started = Instant::now();
    let link = a.link.connect_within(timeout)?;
    let hal = HostHal::new(link, state.storage);
    let mut session = Session::new(&key, hal, a.timeout, state.blank)?;
    let reply = session.exchange(&program, timeout.saturating_sub(started.elapsed()))?;
    let decoded = decode_reply(&reply).map_err(|e| {
        CliError::other(format!(
            "malformed reply ({e}): {}",
            crate::cli::hex(&reply)
        ))
    })?;
    if a.json {
        println!("{}", describe::reply_json(&decoded));
    } else {
        for line in describe::reply_text(&decoded) {
            println!("{line}");
        }
    }
    match decoded {
        Reply::Ok { .. } => Ok(()),
        Reply::Exception { .. } => Err(CliError::device("the program ended with a VM exception")),
        Reply::Error(c) => Err(CliError::device(format!(
            "the device answered SACCP error {}",
            c.0
        ))),
    }
}
