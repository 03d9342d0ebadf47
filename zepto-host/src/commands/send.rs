//! `zepto send`: the client. Sends one program reliably and prints the reply.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use zepto_kernel::client::{Client, ClientConfig, ClientEvent};
use zepto_kernel::hal::{Clock, PacketBus, Waiter, WaitingFor};
use zepto_kernel::nonce_store::BlankStart;
use zepto_kernel::saccp::client::{decode_reply, Reply};
use zepto_kernel::sagdp;
use zepto_kernel::sasp::{self, DefaultCipher};
use zepto_kernel::Error;

use crate::cli::{parse_hex, thousands, CliError};
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
    /// The largest packet the device accepts (its MTU), which bounds the program:
    /// 512 for `zepto device` and the host links, 70 or 134 for the micro:bit
    /// firmware (`baremetal-app`).
    #[arg(long, value_name = "BYTES", default_value_t = MAX_PACKET as u16,
          value_parser = clap::value_parser!(u16).range(MIN_MTU..=MAX_PACKET as i64))]
    pub mtu: u16,
}

/// The smallest `--mtu`: a packet of one encrypted block (SASP header and tag, and 16
/// bytes that hold the SAGDP and SACCP headers and a program of up to 8 bytes).
const MIN_MTU: i64 = sasp::MIN_PACKET_LEN as i64;

/// The longest program one NEW_PROGRAM packet of at most `mtu` bytes carries: SASP
/// (header, tag, data padded to 16-byte blocks) around SAGDP's header, SACCP's one-byte
/// head and the program.
pub fn max_program_len(mtu: usize) -> usize {
    let packet = |n: usize| sasp::packet_len(sagdp::HEADER_LEN + 1 + n);
    (0..mtu).rev().find(|n| packet(*n) <= mtu).unwrap_or(0)
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
            return crate::commands::tools::assemble_file(Some(p));
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
                crate::elog!("zepto: {n}");
            }
        }
        Ok(Self { hal, client })
    }

    /// Sends `program` and waits up to `timeout` for the reply; returns the SACCP reply.
    pub fn exchange(&mut self, program: &[u8], timeout: Duration) -> Result<Vec<u8>, CliError> {
        let start = Instant::now();
        let packet = match self.client.send_program(&mut self.hal, program) {
            Ok(p) => p.to_vec(),
            Err(Error::Storage) => return Err(self.state_error("nothing was sent")),
            Err(e) => return Err(CliError::input(format!("cannot build the command: {e}"))),
        };
        self.transmit(&packet)?;
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(CliError::no_answer(format!(
                    "no reply from {} within {} ms (is the device running, and does it use this \
                     key and {}? a device drops packets it cannot authenticate)",
                    self.hal.link_name(),
                    timeout.as_millis(),
                    sasp::DEFAULT_CIPHER_NAME
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
                    Err(Error::Storage) => {
                        return Err(self.state_error("a packet from the device was dropped"))
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
                        "no reply from {} after all resends (is the device running, and does \
                         it use this key and {}?)",
                        self.hal.link_name(),
                        sasp::DEFAULT_CIPHER_NAME
                    )))
                }
            }
        }
    }

    /// The nonce state could not be read or written: what failed, and what it
    /// meant for the exchange (`what`).
    fn state_error(&mut self, what: &str) -> CliError {
        let why = self.hal.storage.failure.take().unwrap_or_else(|| {
            let path = self.hal.storage.path();
            format!(
                "{} failed",
                path.map_or("storage".into(), |p| p.display().to_string())
            )
        });
        CliError::other(format!("nonce state: {why}; {what}"))
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
    let max = max_program_len(usize::from(a.mtu));
    if program.len() > max {
        return Err(CliError::input(format!(
            "program of {} bytes; this device accepts at most {} (one {}-byte packet; \
             --mtu to change)",
            thousands(program.len()),
            thousands(max),
            a.mtu
        )));
    }
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
        crate::outln!("{}", describe::reply_json(&decoded))?;
    } else {
        for line in describe::reply_text(&decoded) {
            crate::outln!("{line}")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use zepto_kernel::testhal::TestHal;

    /// The limit is what the client really builds: for every MTU, the longest program
    /// makes a packet of at most MTU bytes, one byte more a longer packet.
    #[test]
    fn max_program_len_matches_the_client() {
        assert_eq!(max_program_len(512), 472);
        assert_eq!(max_program_len(70), 40);
        assert_eq!(max_program_len(MIN_MTU as usize), 8);
        for mtu in MIN_MTU as usize..=MAX_PACKET {
            let n = max_program_len(mtu);
            let packet_len = |len: usize| {
                let mut hal = TestHal::<256>::default();
                let cfg = ClientConfig {
                    blank: BlankStart::Floor(0),
                    ..ClientConfig::default()
                };
                // The client `zepto send` uses (its heap holds the longest command).
                let mut c: Client<DefaultCipher, 2048, 4> =
                    Client::new(&[1; 16], &mut hal, cfg).unwrap();
                c.send_program(&mut hal, &vec![0x21; len]).unwrap().len()
            };
            assert!(packet_len(n) <= mtu, "mtu {mtu}: {n}");
            assert!(packet_len(n + 1) > mtu, "mtu {mtu}: {n}");
        }
    }
}
