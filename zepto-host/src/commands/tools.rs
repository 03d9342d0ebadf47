//! Offline tools: `zepto asm`, `zepto disasm`, `zepto vm`, `zepto decode`.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use zepto_kernel::eax::Eax;
use zepto_kernel::encoding;
use zepto_kernel::hal::Waiter;
use zepto_kernel::pump::Execution;
use zepto_kernel::sagdp::{self, PacketStatus};
use zepto_kernel::sasp::{self, DefaultCipher};
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::reply::decode_exception;
use zepto_kernel::vm::{ExecFlags, VmConfig, VmMedium, VmOne, VmSmall, VmStep, VmTiny};
use zepto_kernel::{saccp, Heap, HeapOps};

use crate::asm;
use crate::cli::{hex, parse_hex, parse_key, CliError};
use crate::commands::common::{default_plugins, Level, PluginSet, PluginSpec};
use crate::describe::{exception_name, frames_report};

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
    /// Body part: `ID=KIND[:ARG]` with KIND ping, echo, sensor, const:HEX, pin:N.
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

/// Runs `zepto asm`: prints the program bytes as hex.
pub fn asm(a: AsmArgs) -> Result<(), CliError> {
    let (name, source) = match &a.file {
        Some(p) if p.as_os_str() != "-" => (
            p.display().to_string(),
            std::fs::read_to_string(p)
                .map_err(|e| CliError::input(format!("{}: {e}", p.display())))?,
        ),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::input(format!("stdin: {e}")))?;
            ("<stdin>".to_string(), s)
        }
    };
    let code = asm::assemble(&source)
        .map_err(|e| CliError::input(format!("{name}:{}: {}", e.line, e.message)))?;
    crate::outln!("{}", hex(&code))?;
    Ok(())
}

/// Runs `zepto disasm`: one instruction per line with its byte offset (decimal, like
/// jump deltas and CALL addresses), and the targets of jumps as a comment.
pub fn disasm(a: DisasmArgs) -> Result<(), CliError> {
    let code = parse_hex(&a.hex)?;
    for line in asm::annotated(&code) {
        crate::outln!("{line}")?;
    }
    Ok(())
}

/// Largest number of start/resume steps `zepto vm` takes before giving up.
const VM_MAX_STEPS: usize = 100_000;

/// Runs `zepto vm`: one program in the kernel VM with simulated time.
///
/// VM parameters: reply stack 16 frames (Tiny and up), expression stack 32 entries
/// (Small and up), 4 pseudo-threads (Medium), [`VmConfig::default`] (reply buffer 256
/// bytes); heap 4096 bytes. The program runs as a usual command (`is_first`, not
/// `is_last`), so it ends with `EXIT ISLAST` (or `NONE`).
pub fn vm(a: VmArgs) -> Result<(), CliError> {
    let code = parse_hex(&a.hex)?;
    let specs = if a.plugins.is_empty() {
        default_plugins()
    } else {
        a.plugins.clone()
    };
    let mut set = PluginSet::new(&specs);
    let mut table = set.table();
    let cfg = VmConfig::default();
    let mut vm: Box<dyn Execution> = match a.level {
        Level::One => Box::new(VmOne::new(cfg)),
        Level::Tiny => Box::new(VmTiny::<16>::new(cfg)),
        Level::Small => Box::new(VmSmall::<16, 32>::new(cfg)),
        Level::Medium => Box::new(VmMedium::<16, 32, 4>::new(cfg)),
    };
    let mut heap = Box::new(Heap::<4096, 16>::new());
    let mut hal = TestHal::<64>::default();
    let h = heap
        .alloc()
        .map_err(|e| CliError::other(format!("heap: {e}")))?;
    heap.set_request(h, &code)
        .map_err(|e| CliError::input(format!("program of {} bytes: {e}", code.len())))?;
    let flags = ExecFlags {
        is_first: true,
        is_last: false,
    };
    let vm_err = |e| CliError::other(format!("vm: {e}"));
    let mut step = vm
        .start(heap.as_mut(), h, flags, &mut table, &mut hal)
        .map_err(vm_err)?;
    let mut steps = 0;
    let (reply_flags, exception) = loop {
        match step {
            VmStep::Done {
                flags, exception, ..
            } => break (flags, exception),
            VmStep::Waiting(w) => {
                steps += 1;
                if steps > VM_MAX_STEPS {
                    return Err(CliError::other(format!(
                        "the program did not end after {VM_MAX_STEPS} waits \
                         ({} ms of simulated time; waiting for a pin?)",
                        hal.now_ms
                    )));
                }
                let wake = hal.wait_for(&w);
                step = vm
                    .resume(heap.as_mut(), h, &mut table, &mut hal, wake)
                    .map_err(vm_err)?;
            }
        }
    };
    let reply = heap
        .reply(h)
        .map_err(|e| CliError::other(format!("heap: {e}")))?
        .to_vec();
    let flags_name = format!("{reply_flags:?}").to_ascii_uppercase();
    let (buf, exc_json, exc_line) = match exception {
        Some(e) => {
            let code = e.code.code();
            let rest = decode_exception(&reply)
                .map(|r| r.reply_buffer.to_vec())
                .unwrap_or_default();
            (
                rest,
                json!({
                    "code": code,
                    "name": exception_name(code),
                    "position": e.position,
                    "truncated": e.truncated,
                }),
                Some(format!(
                    "{} ({code}) at offset {}{}",
                    exception_name(code),
                    e.position,
                    if e.truncated {
                        ", reply buffer truncated"
                    } else {
                        ""
                    }
                )),
            )
        }
        None => (reply.clone(), Value::Null, None),
    };
    let (fjs, flines) = frames_report(&buf, "");
    if a.json {
        let out = json!({
            "reply": hex(&reply),
            "flags": flags_name,
            "time_ms": hal.now_ms,
            "exception": exc_json,
            "frames": fjs,
        });
        crate::outln!("{out}")?;
    } else {
        crate::outln!(
            "reply:     {} ({} bytes, {flags_name})",
            if reply.is_empty() {
                "(empty)".to_string()
            } else {
                hex(&reply)
            },
            reply.len()
        )?;
        if let Some(l) = &exc_line {
            crate::outln!("exception: {l}")?;
        }
        for l in flines {
            crate::outln!("{l}")?;
        }
        if hal.now_ms > 0 {
            crate::outln!("time:      {} ms (simulated)", hal.now_ms)?;
        }
    }
    match exc_line {
        Some(l) => Err(CliError::device(format!("VM exception {l}"))),
        None => Ok(()),
    }
}

/// The layers `zepto decode` found, as text lines and one JSON object.
struct Dissection {
    lines: Vec<String>,
    json: serde_json::Map<String, Value>,
}

impl Dissection {
    fn line(&mut self, layer: &str, text: impl AsRef<str>) {
        self.lines.push(format!("{layer:<7} {}", text.as_ref()));
    }
    fn more(&mut self, text: impl AsRef<str>) {
        self.lines.push(format!("{:<7} {}", "", text.as_ref()));
    }
}

/// Why `zepto decode` stopped: the message and the exit code.
fn stop(code: i32, message: String) -> CliError {
    CliError { code, message }
}

/// Runs `zepto decode`: dissects one packet layer by layer.
///
/// Exit codes: 2 for input that cannot be a packet (bad hex or key, too short, a
/// SADLP frame without its closing delimiter); 4 when the packet does not check out
/// (SADLP CRC or COBS error, authentication failure, malformed layer); 0 otherwise,
/// also for a reply that carries a VM exception or SACCP error (that is content).
pub fn decode(a: DecodeArgs) -> Result<(), CliError> {
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

fn saccp_command(d: &mut Dissection, cmd: &[u8]) -> Result<(), CliError> {
    let Some((&head, mut rest)) = cmd.split_first() else {
        d.line("SACCP", "empty command");
        return Err(stop(4, "SACCP: empty command".into()));
    };
    let kind = head & 0x07;
    let name = match kind {
        saccp::REQ_PAIRING => "PAIRING",
        saccp::REQ_OTA_PROGRAMMING => "OTA_PROGRAMMING",
        saccp::REQ_NEW_PROGRAM => "NEW_PROGRAM",
        saccp::REQ_REPEAT_OLD_PROGRAM => "REPEAT_OLD_PROGRAM",
        saccp::REQ_REUSE_OLD_PROGRAM => "REUSE_OLD_PROGRAM",
        saccp::REQ_PHY_AND_ROUTING_DATA => "PHY_AND_ROUTING_DATA",
        _ => "unknown",
    };
    let mut js = json!({"direction": "command", "type": name, "type_code": kind});
    let reserved = head & saccp::HEAD_RESERVED != 0;
    d.line(
        "SACCP",
        format!(
            "command {name} (type {kind}){}",
            if reserved {
                "; reserved bits set (the device answers INVALID_FORMAT)"
            } else {
                ""
            }
        ),
    );
    let mut headers = Vec::new();
    if head & saccp::EXTRA_HEADERS_FLAG != 0 {
        loop {
            let Ok((v, n)) = encoding::decode_uint(rest, 2) else {
                d.more("extra headers: malformed");
                d.json.insert("saccp".into(), js);
                return Err(stop(4, "SACCP: malformed extra headers".into()));
            };
            let (t, len) = ((v & 7) as u16, (v >> 3) as usize);
            let Some(data) = rest.get(n..n + len) else {
                d.more("extra headers: header data runs past the end");
                d.json.insert("saccp".into(), js);
                return Err(stop(4, "SACCP: malformed extra headers".into()));
            };
            rest = &rest[n + len..];
            if t == saccp::HDR_END_OF_HEADERS {
                break;
            }
            if t == saccp::HDR_ENABLE_ZEPTOERR {
                let tmr = data.first().is_some_and(|b| b & 1 != 0);
                d.more(format!(
                    "extra header ENABLE_ZEPTOERR, truncate-most-recent {}",
                    if tmr { "yes" } else { "no" }
                ));
                headers.push(json!({"type": "ENABLE_ZEPTOERR", "truncate_most_recent": tmr}));
            } else {
                d.more(format!(
                    "extra header type {t} ({} bytes, skipped): {}",
                    data.len(),
                    hex(data)
                ));
                headers.push(json!({"type": t, "data": hex(data)}));
            }
        }
    }
    js["extra_headers"] = json!(headers);
    match kind {
        saccp::REQ_NEW_PROGRAM => {
            d.more(format!("program {} bytes: {}", rest.len(), hex(rest)));
            for l in asm::annotated(rest) {
                d.more(format!("  {l}"));
            }
            js["program"] = json!(hex(rest));
            js["disassembly"] = json!(asm::disassemble(rest).lines().collect::<Vec<_>>());
        }
        saccp::REQ_REPEAT_OLD_PROGRAM | saccp::REQ_REUSE_OLD_PROGRAM => {
            let Some((&clen, r)) = rest.split_first() else {
                d.json.insert("saccp".into(), js);
                return Err(stop(4, "SACCP: checksum length missing".into()));
            };
            let Some(sum) = r.get(..usize::from(clen)) else {
                d.json.insert("saccp".into(), js);
                return Err(stop(4, "SACCP: checksum runs past the end".into()));
            };
            d.more(format!("old program checksum ({clen} bytes): {}", hex(sum)));
            js["checksum"] = json!(hex(sum));
            let mut frags = &r[usize::from(clen)..];
            if kind == saccp::REQ_REUSE_OLD_PROGRAM {
                let mut fj = Vec::new();
                while let Some((&tag, f)) = frags.split_first() {
                    let Ok((len, n)) = encoding::decode_uint(f, 2) else {
                        break;
                    };
                    let f = &f[n..];
                    if tag == saccp::FRAGMENT_VERBATIM {
                        let Some(bytes) = f.get(..len as usize) else {
                            break;
                        };
                        d.more(format!("fragment verbatim {len} bytes: {}", hex(bytes)));
                        fj.push(json!({"verbatim": hex(bytes)}));
                        frags = &f[len as usize..];
                    } else {
                        let Ok((off, m)) = encoding::decode_uint(f, 2) else {
                            break;
                        };
                        d.more(format!("fragment reference {len} bytes at offset {off}"));
                        fj.push(json!({"reference": {"offset": off, "len": len}}));
                        frags = &f[m..];
                    }
                }
                if !frags.is_empty() {
                    d.more(format!("malformed fragments: {}", hex(frags)));
                }
                js["fragments"] = json!(fj);
            }
        }
        _ => {
            d.more(format!("body {} bytes: {}", rest.len(), hex(rest)));
            js["body"] = json!(hex(rest));
        }
    }
    d.json.insert("saccp".into(), js);
    Ok(())
}

fn saccp_reply(d: &mut Dissection, r: &[u8]) -> Result<(), CliError> {
    use saccp::client::Reply;
    let reply = saccp::client::decode_reply(r).map_err(|e| {
        d.line("SACCP", format!("reply malformed ({e}): {}", hex(r)));
        stop(4, format!("SACCP: malformed reply ({e})"))
    })?;
    let js = match reply {
        Reply::Ok { truncated, data } => {
            d.line(
                "SACCP",
                format!(
                    "reply OK, {} bytes{}: {}",
                    data.len(),
                    if truncated { ", truncated" } else { "" },
                    hex(data)
                ),
            );
            let (fj, fl) = frames_report(data, "  ");
            for l in fl {
                d.more(l);
            }
            json!({"direction": "reply", "type": "OK", "truncated": truncated, "size": data.len(),
                   "reply": hex(data), "frames": fj})
        }
        Reply::Exception { truncated, data } => {
            d.line(
                "SACCP",
                format!(
                    "reply EXCEPTION, {} bytes{}: {}",
                    data.len(),
                    if truncated { ", truncated" } else { "" },
                    hex(data)
                ),
            );
            match decode_exception(data) {
                Ok(e) => {
                    d.more(format!(
                        "VM exception {} ({}) at offset {}{}",
                        exception_name(e.code),
                        e.code,
                        e.position,
                        if e.truncated {
                            ", reply buffer truncated"
                        } else {
                            ""
                        }
                    ));
                    let (fj, fl) = frames_report(e.reply_buffer, "  ");
                    for l in fl {
                        d.more(l);
                    }
                    json!({"direction": "reply", "type": "EXCEPTION", "truncated": truncated,
                           "size": data.len(),
                           "exception": {"code": e.code, "name": exception_name(e.code),
                                         "position": e.position, "truncated": e.truncated},
                           "frames": fj})
                }
                Err(err) => {
                    d.more(format!("exception data malformed ({err})"));
                    json!({"direction": "reply", "type": "EXCEPTION", "truncated": truncated,
                           "size": data.len(), "exception": null, "data": hex(data)})
                }
            }
        }
        Reply::Error(code) => {
            let name = match code.0 {
                1 => "INVALID_FORMAT",
                2 => "OLD_PROGRAM_CHECKSUM_DOESNT_MATCH",
                3 => "ENTROPY_RECOVERY_NEEDED",
                4 => "ENTROPY_RECOVERY_COMPLETED",
                _ => "unknown",
            };
            d.line("SACCP", format!("reply ERROR {name} ({})", code.0));
            json!({"direction": "reply", "type": "ERROR", "code": code.0, "name": name})
        }
    };
    d.json.insert("saccp".into(), js);
    Ok(())
}
