//! Offline tools: `zepto asm`, `zepto disasm`, `zepto vm` (`zepto decode` is in
//! [`super::decode`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};
use zepto_kernel::hal::Waiter;
use zepto_kernel::pump::Execution;
use zepto_kernel::testhal::TestHal;
use zepto_kernel::vm::reply::decode_exception;
use zepto_kernel::vm::{ExecFlags, VmConfig, VmMedium, VmOne, VmSmall, VmStep, VmTiny};
use zepto_kernel::HeapMem;

use crate::asm;
use crate::cli::{hex, parse_hex, thousands, CliError};
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

/// Reads and assembles `file` (`None` or `-`: standard input, named `<stdin>`). Every
/// error of the source is reported, one per line as `file:line: message`: the same
/// for `zepto asm` and `zepto send --asm`.
pub fn assemble_file(file: Option<&Path>) -> Result<Vec<u8>, CliError> {
    let (name, source) = match file {
        Some(p) if p.as_os_str() != "-" => (
            p.display().to_string(),
            std::fs::read_to_string(p)
                .map_err(|e| CliError::input(format!("{}: {e}", p.display())))?,
        ),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::input(format!("<stdin>: {e}")))?;
            ("<stdin>".to_string(), s)
        }
    };
    asm::assemble(&source).map_err(|e| CliError::input(e.report(&name)))
}

/// Runs `zepto asm`: prints the program bytes as hex.
pub fn asm(a: AsmArgs) -> Result<(), CliError> {
    let code = assemble_file(a.file.as_deref())?;
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

/// The heap of `zepto vm`: 4096 bytes, 16 handles.
type VmHeap = HeapMem<4096, 16>;

/// A VM of `level` with the parameters `zepto vm` documents.
fn new_vm(level: Level) -> Box<dyn Execution> {
    let cfg = VmConfig::default();
    match level {
        Level::One => Box::new(VmOne::new(cfg)),
        Level::Tiny => Box::new(VmTiny::<16>::new(cfg)),
        Level::Small => Box::new(VmSmall::<16, 32>::new(cfg)),
        Level::Medium => Box::new(VmMedium::<16, 32, 4>::new(cfg)),
    }
}

/// The program runs as a usual command: it opens its chain, the reply closes it.
const VM_FLAGS: ExecFlags = ExecFlags {
    is_first: true,
    is_last: false,
};

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
    let mut vm = new_vm(a.level);
    let mut mem = Box::new(VmHeap::new());
    let mut heap = mem.heap();
    let mut hal = TestHal::<64>::default();
    let h = heap
        .alloc()
        .map_err(|e| CliError::other(format!("heap: {e}")))?;
    // The heap holds the program and its reply; the reply buffer is small beside it,
    // so running out of heap means the program is too long.
    let too_long = || {
        CliError::input(format!(
            "program of {} bytes; zepto vm holds at most {} bytes of program and reply \
             together (its heap)",
            thousands(code.len()),
            thousands(VmHeap::new().capacity())
        ))
    };
    heap.set_request(h, &code).map_err(|_| too_long())?;
    let vm_err = |e| CliError::other(format!("vm: {e}"));
    let mut step = vm
        .start(&mut heap, h, VM_FLAGS, &mut table, &mut hal)
        .map_err(|e| match e {
            zepto_kernel::Error::OutOfMemory => too_long(),
            e => vm_err(e),
        })?;
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
                    .resume(&mut heap, h, &mut table, &mut hal, wake)
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
