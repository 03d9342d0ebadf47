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

/// Runs `zepto asm`: prints the program bytes as hex.

/// The layers `zepto decode` found, as text lines and one JSON object.
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
}

/// Why `zepto decode` stopped: the message and the exit code.
pub(super) fn stop(code: i32, message: String) -> CliError {
    CliError { code, message }
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
    let mut d = Dissection {
        lines: Vec::new(),
        json: serde_json::Map::new(),
    };
    let r = dissect(&mut d, &key, a.from, &packet);
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

fn dissect(d: &mut Dissection, key: &[u8; 16], from: Sender, input: &[u8]) -> Result<(), CliError> {
    if input.is_empty() {
        return Err(stop(2, "empty packet".into()));
    }
    let packet = if input.first() == Some(&0) {
        sadlp_layer(d, input)?
    } else {
        d.json.insert("sadlp".into(), Value::Null);
        input.to_vec()
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
    let body_end = input
        .iter()
        .skip(1)
        .position(|b| *b == 0)
        .map(|p| p + 1)
        .ok_or_else(|| {
            stop(
                2,
                "SADLP frame without its closing 00 delimiter (a SASP packet never starts \
                 with a frame delimiter in this tool; frame it or drop the leading 00)"
                    .into(),
            )
        })?;
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
