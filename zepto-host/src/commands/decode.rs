//! `zepto decode`: dissects one captured packet layer by layer.

mod saccp;

use clap::Args;
use serde_json::{json, Value};
use zepto_kernel::eax::Eax;
use zepto_kernel::encoding;
use zepto_kernel::sagdp::{self, PacketStatus};
use zepto_kernel::sasp::{self, DefaultCipher};

use crate::cli::{hex, parse_hex, parse_key, CliError};
use saccp::{saccp_command, saccp_reply};

/// `zepto decode --key HEX [--link udp|serial|tcp] PACKETHEX`
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The 128-bit key, 32 hex digits.
    #[arg(long)]
    pub key: String,
    /// Who sent the packet.
    #[arg(long, value_enum, default_value_t = Sender::Client)]
    pub from: Sender,
    /// Where the packet was captured, which decides its framing: udp (a bare SASP
    /// packet), serial or tcp (a SADLP frame). Without it, decode tries a SADLP frame
    /// (if the input starts with 00), then a bare SASP packet, and says which matched.
    #[arg(long, value_enum)]
    pub link: Option<Capture>,
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

/// The link a packet was captured on.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// A UDP datagram: one bare SASP packet.
    Udp,
    /// A serial line: a SADLP frame (`00`, COBS, `00`).
    Serial,
    /// A TCP byte stream: a SADLP frame.
    Tcp,
}

/// The layers `zepto decode` found, as text lines and one JSON object.
#[derive(Default)]
pub(super) struct Dissection {
    lines: Vec<String>,
    json: serde_json::Map<String, Value>,
}

impl Dissection {
    pub(super) fn line(&mut self, layer: &str, text: impl AsRef<str>) {
        self.lines.push(format!("{layer:<7} {}", text.as_ref()));
    }
    pub(super) fn more(&mut self, text: impl AsRef<str>) {
        self.lines.push(format!("{:<7} {}", "", text.as_ref()));
    }
    /// True if SASP authenticated the packet.
    fn authentic(&self) -> bool {
        self.json.get("sasp").and_then(|s| s.get("authentic")) == Some(&Value::Bool(true))
    }
    /// True if the SADLP layer found a whole frame with a correct CRC.
    fn frame_ok(&self) -> bool {
        self.json.get("sadlp").and_then(|s| s.get("crc_ok")) == Some(&Value::Bool(true))
    }
}

/// Why `zepto decode` stopped: the message and the exit code.
pub(super) fn stop(code: i32, message: String) -> CliError {
    CliError { code, message }
}

/// How to read the captured bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A SADLP frame around the SASP packet.
    Sadlp,
    /// A bare SASP packet.
    Bare,
}

/// One reading of the input: the layers found and the verdict.
type Attempt = (Dissection, Result<(), CliError>);

/// Reads `input` as `framing` says; `why` is the reason for a bare packet, shown on
/// the SADLP line.
fn attempt(key: &[u8; 16], from: Sender, input: &[u8], framing: Framing, why: &str) -> Attempt {
    let mut d = Dissection::default();
    let r = dissect(&mut d, key, from, input, framing, why);
    (d, r)
}

/// Runs `zepto decode`: dissects one packet layer by layer.
///
/// Exit codes: 2 for input that cannot be a packet (bad hex or key, too short, a
/// SADLP frame without its closing delimiter); 4 when the packet does not check out
/// (SADLP CRC or COBS error, authentication failure, malformed layer); 0 otherwise,
/// also for a reply that carries a VM exception or SACCP error (that is content).
pub fn run(a: DecodeArgs) -> Result<(), CliError> {
    let key = parse_key(&a.key)?;
    let packet = parse_hex(&a.packet)?;
    let (mut d, r) = match a.link {
        Some(Capture::Udp) => attempt(
            &key,
            a.from,
            &packet,
            Framing::Bare,
            "--link udp carries bare SASP packets",
        ),
        Some(Capture::Serial | Capture::Tcp) => {
            let (d, r) = attempt(&key, a.from, &packet, Framing::Sadlp, "");
            let r = r.map_err(|mut e| {
                if !d.json.contains_key("sasp") {
                    e.message
                        .push_str(" (not a SADLP frame; for a UDP datagram use --link udp)");
                }
                e
            });
            (d, r)
        }
        None => auto(&key, a.from, &packet),
    };
    if a.json {
        if let Err(e) = &r {
            d.json
                .insert("error".into(), Value::String(e.message.clone()));
        }
        crate::outln!("{}", Value::Object(d.json))?;
    } else {
        for l in &d.lines {
            crate::outln!("{l}")?;
        }
    }
    r
}

/// Decode without `--link`: a SADLP frame if the input starts with `00` and reads as
/// one that authenticates; else a bare SASP packet, saying why SADLP did not match.
fn auto(key: &[u8; 16], from: Sender, input: &[u8]) -> Attempt {
    if input.first() != Some(&0) {
        let why = "a bare SASP packet (a SADLP frame starts with 00)";
        return attempt(key, from, input, Framing::Bare, why);
    }
    let (frame, frame_r) = attempt(key, from, input, Framing::Sadlp, "");
    let Err(frame_err) = frame_r else {
        return (frame, Ok(()));
    };
    if frame.authentic() {
        return (frame, Err(frame_err));
    }
    let frame_why = frame_err.message.trim_start_matches("SADLP: ").to_string();
    let why = format!("a bare SASP packet, as UDP carries it (as a SADLP frame: {frame_why})");
    let (mut bare, bare_r) = attempt(key, from, input, Framing::Bare, &why);
    if bare.authentic() {
        bare.json
            .insert("sadlp_error".into(), Value::String(frame_err.message));
        return (bare, bare_r);
    }
    if frame.frame_ok() {
        // A well-formed frame that does not authenticate: a wrong key or sender.
        return (frame, Err(frame_err));
    }
    let bare_err = bare_r
        .err()
        .unwrap_or_else(|| stop(4, "not authentic".into()));
    bare.json.insert(
        "sadlp_error".into(),
        Value::String(frame_err.message.clone()),
    );
    let message = format!(
        "neither reading checks out (give --link udp, serial or tcp to choose one): \
         as a SADLP frame: {frame_why}; as a bare SASP packet: {}",
        bare_err.message
    );
    (bare, Err(stop(frame_err.code.max(bare_err.code), message)))
}

fn dissect(
    d: &mut Dissection,
    key: &[u8; 16],
    from: Sender,
    input: &[u8],
    framing: Framing,
    why: &str,
) -> Result<(), CliError> {
    if input.is_empty() {
        return Err(stop(2, "empty packet".into()));
    }
    let packet = match framing {
        Framing::Sadlp => {
            let p = sadlp_layer(d, input)?;
            d.json.insert("framing".into(), json!("sadlp"));
            p
        }
        Framing::Bare => {
            d.line("SADLP", format!("none: {why}"));
            d.json.insert("framing".into(), json!("none"));
            d.json.insert("sadlp".into(), Value::Null);
            input.to_vec()
        }
    };
    let payload = match sasp_layer(d, key, from, &packet)? {
        Some(p) => p,
        None => return Ok(()),
    };
    let Some(hlp) = sagdp_layer(d, &payload)? else {
        return Ok(());
    };
    match from {
        Sender::Client => saccp_command(d, &hlp),
        Sender::Device => saccp_reply(d, &hlp),
    }
}

fn sadlp_layer(d: &mut Dissection, input: &[u8]) -> Result<Vec<u8>, CliError> {
    if input.first() != Some(&0) {
        d.line("SADLP", "no frame: a frame starts with its 00 delimiter");
        return Err(stop(4, "SADLP: no frame (a frame starts with 00)".into()));
    }
    let body_end = input
        .iter()
        .skip(1)
        .position(|b| *b == 0)
        .map(|p| p + 1)
        .ok_or_else(|| stop(2, "SADLP: frame without its closing 00 delimiter".into()))?;
    let encoded = input.get(1..body_end).unwrap_or(&[]);
    let trailing = input.len() - body_end - 1;
    d.line(
        "SADLP",
        format!(
            "frame {} bytes: 00 | COBS {} bytes | 00{}",
            body_end + 1,
            encoded.len(),
            if trailing > 0 {
                format!(" (+{trailing} bytes after the frame, ignored)")
            } else {
                String::new()
            }
        ),
    );
    let mut buf = encoded.to_vec();
    let n = match cobs::decode_in_place(&mut buf) {
        Ok(n) => n,
        Err(_) => {
            d.more("COBS: invalid");
            d.json.insert(
                "sadlp".into(),
                json!({"frame_len": body_end + 1, "cobs": "invalid"}),
            );
            return Err(stop(4, "SADLP: not valid COBS".into()));
        }
    };
    buf.truncate(n);
    if n <= zepto_kernel::sadlp::CRC_LEN {
        d.more(format!(
            "COBS: ok, {n} bytes: too short for a packet and its CRC"
        ));
        return Err(stop(4, "SADLP: frame too short".into()));
    }
    let (pkt, crc) = buf.split_at(n - zepto_kernel::sadlp::CRC_LEN);
    let stored = u16::from_le_bytes([crc[0], crc[1]]);
    let computed = zepto_kernel::sadlp::CRC16.checksum(pkt);
    let ok = stored == computed;
    d.more(format!(
        "COBS: ok; CRC-16 {:04x} {} ; packet {} bytes",
        stored,
        if ok {
            "ok".to_string()
        } else {
            format!("WRONG (computed {computed:04x})")
        },
        pkt.len()
    ));
    d.json.insert(
        "sadlp".into(),
        json!({
            "frame_len": body_end + 1,
            "cobs": "ok",
            "crc": format!("{stored:04x}"),
            "crc_ok": ok,
            "packet": hex(pkt),
        }),
    );
    if !ok {
        return Err(stop(
            4,
            format!("SADLP: CRC mismatch (frame {stored:04x}, computed {computed:04x})"),
        ));
    }
    Ok(pkt.to_vec())
}

/// SASP: returns the payload for SAGDP, or `None` for an SASP-internal message.
fn sasp_layer(
    d: &mut Dissection,
    key: &[u8; 16],
    from: Sender,
    packet: &[u8],
) -> Result<Option<Vec<u8>>, CliError> {
    if packet.len() <= sasp::OVERHEAD {
        return Err(stop(
            2,
            format!(
                "SASP: packet of {} bytes is too short (header 6 + tag 16 + at least one \
                 16-byte block = {})",
                packet.len(),
                sasp::MIN_PACKET_LEN
            ),
        ));
    }
    let mut hdr = [0u8; sasp::HEADER_LEN];
    hdr.copy_from_slice(&packet[..sasp::HEADER_LEN]);
    let tag = &packet[sasp::HEADER_LEN..sasp::OVERHEAD];
    let mut data = packet[sasp::OVERHEAD..].to_vec();
    let (vp, to_sasp) = sasp::parse_header(&hdr);
    let sender_flag = match from {
        Sender::Device => sasp::Role::Device.peer_flag(),
        Sender::Client => sasp::Role::Client.peer_flag(),
    };
    let sender = match from {
        Sender::Device => "device",
        Sender::Client => "client",
    };
    d.line(
        "SASP",
        format!(
            "packet {} bytes; header {}: nonce VP {vp}, destination {}",
            packet.len(),
            hex(&hdr),
            if to_sasp {
                "SASP itself (flag 1)"
            } else {
                "SAGDP (flag 0)"
            }
        ),
    );
    d.more(format!("tag {}", hex(tag)));
    let blocks_note = if data.len().is_multiple_of(sasp::BLOCK_LEN) {
        String::new()
    } else {
        " (not a whole number of 16-byte blocks)".to_string()
    };
    let mut js = json!({
        "len": packet.len(),
        "header": hex(&hdr),
        "nonce": vp,
        "to_sasp": to_sasp,
        "tag": hex(tag),
        "sender": sender,
        "encrypted_len": data.len(),
    });
    let aead = Eax::<DefaultCipher>::new_from_slice(key).map_err(|_| stop(2, "bad key".into()))?;
    let nonce = sasp::eax_nonce(&hdr, sender_flag);
    if sasp::eax_open(&aead, &nonce, &[], &mut data, tag).is_err() {
        d.more(format!(
            "encrypted data {} bytes{blocks_note}; EAX with the {sender}'s peer flag \
             {sender_flag}: AUTHENTICATION FAILED",
            data.len()
        ));
        js["authentic"] = json!(false);
        d.json.insert("sasp".into(), js);
        return Err(stop(
            4,
            format!(
                "authentication failed (wrong key or corrupted packet; or not sent by the \
                 {sender}: try --from {})",
                match from {
                    Sender::Device => "client",
                    Sender::Client => "device",
                }
            ),
        ));
    }
    d.more(format!(
        "encrypted data {} bytes{blocks_note}; EAX with the {sender}'s peer flag \
         {sender_flag}: authentic",
        data.len()
    ));
    js["authentic"] = json!(true);
    // Padding.
    let first = data[0];
    let payload = if first & 0x80 == 0 {
        d.more(format!("no padding; payload {} bytes", data.len()));
        js["padding"] = json!(0);
        data.clone()
    } else {
        let rest = &data[1..];
        let parsed = encoding::decode_uint(rest, 2).ok().and_then(|(c, clen)| {
            let c = c as usize;
            (c >= clen && c < data.len()).then_some((c, clen))
        });
        let Some((c, clen)) = parsed else {
            d.more("padding flag set but the complementary size is invalid");
            d.json.insert("sasp".into(), js);
            return Err(stop(4, "SASP: malformed padding".into()));
        };
        let pad = c - clen;
        let mut p = vec![first & 0x7f];
        p.extend_from_slice(&rest[clen..rest.len() - pad]);
        d.more(format!(
            "padding {pad} bytes (complementary size {c}); payload {} bytes",
            p.len()
        ));
        js["padding"] = json!(pad);
        p
    };
    d.more(format!("payload {}", hex(&payload)));
    js["payload"] = json!(hex(&payload));
    d.json.insert("sasp".into(), js);
    if to_sasp {
        let msg = match payload.split_first() {
            Some((&sasp::MSG_OLD_NONCE, nlw)) if nlw.len() == 6 => {
                let nlw = encoding::read_uint_le(nlw).unwrap_or(0);
                d.line(
                    "SASP",
                    format!("message: old nonce; the peer's last accepted nonce (NLW) is {nlw}"),
                );
                json!({"type": "old_nonce", "nlw": nlw})
            }
            _ => {
                d.line("SASP", "message: unknown SASP message");
                json!({"type": "unknown"})
            }
        };
        d.json.insert("sasp_message".into(), msg);
        return Ok(None);
    }
    Ok(Some(payload))
}

fn describe_id(v: u64) -> String {
    let vp = v & ((1 << 47) - 1);
    let who = if v >> 47 != 0 { "client" } else { "device" };
    format!("{v:#014x} (nonce {vp} of the {who})")
}

/// SAGDP: returns the HLP packet, or `None` for an Error Message.
fn sagdp_layer(d: &mut Dissection, payload: &[u8]) -> Result<Option<Vec<u8>>, CliError> {
    let h = sagdp::Header::parse(payload).map_err(|e| {
        d.line("SAGDP", format!("header invalid: {e}"));
        stop(4, format!("SAGDP: bad header ({e})"))
    })?;
    let (status, id_kind) = match h.status {
        PacketStatus::First => ("first", "chain id"),
        PacketStatus::Intermediate => ("intermediate", "PPID"),
        PacketStatus::Terminating => ("terminating", "PPID"),
        PacketStatus::ErrorMessage => ("error message", "about packet"),
    };
    let id = h.id_field.value();
    let hlp = payload[sagdp::HEADER_LEN..].to_vec();
    d.line(
        "SAGDP",
        format!(
            "status {status}{}; {id_kind} {}",
            if h.requested_resend {
                ", requested-resend"
            } else {
                ""
            },
            describe_id(id)
        ),
    );
    d.json.insert(
        "sagdp".into(),
        json!({
            "status": status,
            "requested_resend": h.requested_resend,
            "id_kind": id_kind,
            "id": id,
            "payload": hex(&hlp),
        }),
    );
    if h.status == PacketStatus::ErrorMessage {
        d.more("Error Message: the sender dropped its chain state");
        return Ok(None);
    }
    Ok(Some(hlp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zepto_kernel::heap::HeapMem;
    use zepto_kernel::nonce_store::{BlankStart, NonceStore};
    use zepto_kernel::sasp::{Role, Sasp};
    use zepto_kernel::testhal::TestHal;

    const KEY: [u8; 16] = [7; 16];

    /// `payload` sealed by SASP as `role` would send it (nonce VP 256; the top bit of
    /// the first byte, SASP's padding flag, cleared).
    fn sealed(role: Role, payload: &[u8]) -> Vec<u8> {
        let mut payload = payload.to_vec();
        payload[0] &= 0x7f;
        let mut hal = TestHal::<256>::default();
        let ns = NonceStore::open(&mut hal, 0, 16, [0; 4], BlankStart::Floor(255)).unwrap();
        let mut s: Sasp = Sasp::new(&KEY, role, ns).unwrap();
        let mut heap_mem = HeapMem::<1024, 2>::new();
        let mut heap = heap_mem.heap();
        let h = heap.alloc().unwrap();
        heap.set_request(h, &payload).unwrap();
        s.send(&mut heap, h, &mut hal).unwrap();
        heap.reply(h).unwrap().to_vec()
    }

    fn every_reading(input: &[u8]) {
        for from in [Sender::Client, Sender::Device] {
            let _ = auto(&KEY, from, input);
            let _ = attempt(&KEY, from, input, Framing::Sadlp, "");
            let _ = attempt(&KEY, from, input, Framing::Bare, "");
        }
    }

    proptest! {
        /// Any bytes, and any authentic packet whatever its SAGDP and SACCP content
        /// (bare and framed): decode reports and never panics.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80),
                        payload in proptest::collection::vec(any::<u8>(), 1..60)) {
            every_reading(&bytes);
            for role in [Role::Client, Role::Device] {
                let pkt = sealed(role, &payload);
                every_reading(&pkt);
                let mut frame = vec![0u8; zepto_kernel::sadlp::encoded_len(pkt.len())];
                let n = zepto_kernel::sadlp::encode(&pkt, &mut frame).unwrap();
                every_reading(&frame[..n]);
            }
        }
    }
}
