//! Human and JSON renderings of what devices answer: SACCP replies, VM reply
//! buffers and VM exceptions.

use serde_json::{json, Value};
use zepto_kernel::saccp::client::Reply;
use zepto_kernel::vm::reply::{self, Frame};
use zepto_kernel::vm::ExceptionCode;

use crate::cli::{hex, spaced_hex};

/// The name of a VM exception code.
pub fn exception_name(code: u16) -> String {
    match ExceptionCode::from_code(code) {
        Some(c) => format!("{c:?}"),
        None => format!("unknown ({code})"),
    }
}

fn frame_json(f: &Frame<'_>) -> Value {
    json!({
        "body": hex(f.body),
        "truncated": f.truncated,
        "exception": f.exception.map(|e| json!({
            "code": e.code, "file_hash": e.file_hash, "line": e.line
        })),
    })
}

/// The frames of a VM reply buffer as JSON (an error string for a malformed buffer).
pub fn frames_json(buf: &[u8]) -> Value {
    match reply::frames(buf).collect::<Result<Vec<_>, _>>() {
        Ok(frames) => Value::Array(frames.iter().map(frame_json).collect()),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// Readable lines for the frames of a VM reply buffer.
pub fn frames_text(buf: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, f) in reply::frames(buf).enumerate() {
        match f {
            Ok(f) => {
                let mut line = format!(
                    "  frame {i}: {:<24} ({} byte{})",
                    if f.body.is_empty() {
                        "(empty)".to_string()
                    } else {
                        spaced_hex(f.body)
                    },
                    f.body.len(),
                    if f.body.len() == 1 { "" } else { "s" }
                );
                if f.truncated {
                    line.push_str(" truncated");
                }
                if let Some(e) = f.exception {
                    line.push_str(&format!(
                        " plugin exception {} (file {:04x} line {})",
                        e.code, e.file_hash, e.line
                    ));
                }
                out.push(line);
            }
            Err(e) => {
                out.push(format!("  frame {i}: malformed ({e})"));
                break;
            }
        }
    }
    out
}

/// A decoded SACCP reply as JSON.
pub fn reply_json(r: &Reply<'_>) -> Value {
    match r {
        Reply::Ok { truncated, data } => json!({
            "status": "ok",
            "truncated": truncated,
            "reply": hex(data),
            "frames": frames_json(data),
            "exception": null,
        }),
        Reply::Exception { truncated, data } => match reply::decode_exception(data) {
            Ok(e) => json!({
                "status": "exception",
                "truncated": *truncated || e.truncated,
                "reply": hex(data),
                "exception": {
                    "code": e.code,
                    "name": exception_name(e.code),
                    "position": e.position,
                },
                "frames": frames_json(e.reply_buffer),
            }),
            Err(err) => json!({
                "status": "exception",
                "reply": hex(data),
                "error": err.to_string(),
            }),
        },
        Reply::Error(code) => json!({
            "status": "error",
            "error_code": code.0,
            "error": saccp_error_name(code.0),
        }),
    }
}

/// Name of an SACCP error code.
pub fn saccp_error_name(code: u16) -> &'static str {
    match code {
        1 => "invalid format",
        2 => "old program checksum does not match",
        3 => "entropy recovery needed",
        4 => "entropy recovery completed",
        _ => "unknown error",
    }
}

/// A decoded SACCP reply as lines of text.
pub fn reply_text(r: &Reply<'_>) -> Vec<String> {
    match r {
        Reply::Ok { truncated, data } => {
            let mut v = vec![format!(
                "OK, {} byte reply{}: {}",
                data.len(),
                if *truncated { " (truncated)" } else { "" },
                spaced_hex(data)
            )];
            v.extend(frames_text(data));
            v
        }
        Reply::Exception { data, .. } => match reply::decode_exception(data) {
            Ok(e) => {
                let mut v = vec![format!(
                    "VM EXCEPTION {} ({}) at instruction offset {}{}",
                    exception_name(e.code),
                    e.code,
                    e.position,
                    if e.truncated { ", reply truncated" } else { "" }
                )];
                if !e.reply_buffer.is_empty() {
                    v.push("  reply buffer before the exception:".into());
                    v.extend(frames_text(e.reply_buffer));
                }
                v
            }
            Err(err) => vec![format!("VM EXCEPTION (malformed: {err}): {}", hex(data))],
        },
        Reply::Error(code) => vec![format!(
            "SACCP ERROR {}: {}",
            code.0,
            saccp_error_name(code.0)
        )],
    }
}
