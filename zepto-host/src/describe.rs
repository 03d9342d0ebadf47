//! Human and JSON renderings of what devices answer: SACCP replies, VM reply
//! buffers and VM exceptions.

use serde_json::{json, Value};
use zepto_kernel::saccp::client::Reply;
use zepto_kernel::vm::reply::{self, frames};
use zepto_kernel::vm::ExceptionCode;

use crate::cli::{hex, spaced_hex};

/// Spec name of a VM exception code.
pub fn exception_name(code: u16) -> &'static str {
    use ExceptionCode::*;
    match ExceptionCode::from_code(code) {
        Some(InvalidInstruction) => "INVALIDINSTRUCTION",
        Some(InvalidEncodedSize) => "INVALIDENCODEDSIZE",
        Some(PluginError) => "PLUGINERROR",
        Some(InvalidParameter) => "INVALIDPARAMETER",
        Some(InvalidReplyNumber) => "INVALIDREPLYNUMBER",
        Some(ExprStackUnderflow) => "EXPRSTACKUNDERFLOW",
        Some(ExprStackInvalidOffset) => "EXPRSTACKINVALIDOFFSET",
        Some(ExprStackFrozenViolation) => "EXPRSTACKFROZENVIOLATION",
        Some(ExprStackOverflow) => "EXPRSTACKOVERFLOW",
        Some(ProgramErrorInvalidReplyFlag) => "PROGRAMERROR_INVALIDREPLYFLAG",
        Some(ProgramErrorInvalidReplySequence) => "PROGRAMERROR_INVALIDREPLYSEQUENCE",
        Some(InvalidExprData) => "INVALIDEXPRDATA",
        Some(ReplyStackOverflow) => "REPLYSTACKOVERFLOW",
        Some(OutOfMemory) => "OUTOFMEMORY",
        Some(HalError) => "HALERROR",
        Some(UnknownBodypart) => "UNKNOWNBODYPART",
        None => "unknown",
    }
}

/// Decodes a reply buffer into frames: JSON objects and readable lines.
pub fn frames_report(buf: &[u8], indent: &str) -> (Vec<Value>, Vec<String>) {
    let mut js = Vec::new();
    let mut lines = Vec::new();
    for (i, f) in frames(buf).enumerate() {
        match f {
            Ok(f) => {
                let exc = f
                    .exception
                    .map(|e| json!({"code": e.code, "file_hash": e.file_hash, "line": e.line}));
                js.push(json!({
                    "body": hex(f.body),
                    "truncated": f.truncated,
                    "exception": exc,
                }));
                let mut s = format!("{indent}{:<11}{}", format!("frame {i}:"), show_body(f.body));
                if f.truncated {
                    s.push_str("  (truncated)");
                }
                if let Some(e) = f.exception {
                    s.push_str(&format!(
                        "  plugin exception {} (file hash 0x{:04x}, line {})",
                        e.code, e.file_hash, e.line
                    ));
                }
                lines.push(s);
            }
            Err(e) => {
                js.push(json!({"error": format!("malformed frame: {e}")}));
                lines.push(format!(
                    "{indent}{:<11}malformed ({e})",
                    format!("frame {i}:")
                ));
            }
        }
    }
    if lines.is_empty() {
        lines.push(format!("{indent}{:<11}(none)", "frames:"));
    }
    (js, lines)
}

/// A frame body: hex, plus the text if it is printable ASCII.
pub fn show_body(b: &[u8]) -> String {
    if b.is_empty() {
        return "(empty)".to_string();
    }
    let mut s = hex(b);
    if b.iter().all(|c| (0x20..0x7f).contains(c)) {
        s.push_str(&format!("  \"{}\"", String::from_utf8_lossy(b)));
    }
    s
}

/// A decoded SACCP reply as JSON.
pub fn reply_json(r: &Reply<'_>) -> Value {
    match r {
        Reply::Ok { truncated, data } => json!({
            "status": "ok",
            "truncated": truncated,
            "reply": hex(data),
            "frames": frames_report(data, "").0,
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
                "frames": frames_report(e.reply_buffer, "").0,
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
            v.extend(frames_report(data, "  ").1);
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
                    v.extend(frames_report(e.reply_buffer, "    ").1);
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
