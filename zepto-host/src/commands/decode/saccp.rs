//! The SACCP layer of `zepto decode`: commands and replies.

use serde_json::json;
use zepto_kernel::encoding;
use zepto_kernel::saccp;
use zepto_kernel::vm::reply::decode_exception;

use super::{stop, Dissection};
use crate::asm;
use crate::cli::{hex, CliError};
use crate::describe::{exception_name, frames_report};

pub(super) fn saccp_command(d: &mut Dissection, cmd: &[u8]) -> Result<(), CliError> {
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

pub(super) fn saccp_reply(d: &mut Dissection, r: &[u8]) -> Result<(), CliError> {
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
