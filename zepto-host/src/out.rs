//! Output that never panics: [`outln!`](crate::outln) for a command's results on
//! standard output, [`elog!`](crate::elog) for diagnostics on standard error.
//!
//! `println!` panics when standard output is a pipe whose reader has gone (`zepto demo
//! | head -1`). Here a closed standard output is [`CliError::closed_pipe`], which ends
//! the command quietly with exit code 0; a diagnostic that cannot be written is
//! dropped, so a device whose log nobody reads goes on serving.

use std::fmt;
use std::io::{ErrorKind, Write};

use crate::cli::CliError;

/// Writes `args` and a newline to standard output (see [`outln!`](crate::outln)).
pub fn line(args: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut o = std::io::stdout().lock();
    o.write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => CliError::closed_pipe(),
            _ => CliError::other(format!("standard output: {e}")),
        })
}

/// Writes `args` and a newline to standard error; a failure is ignored (see
/// [`elog!`](crate::elog)).
pub fn log(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `println!` that returns `Result<(), CliError>` instead of panicking: use it as
/// `outln!("...")?`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: a line that cannot be written is dropped.
#[macro_export]
macro_rules! elog {
    ($($arg:tt)*) => {
        $crate::out::log(format_args!($($arg)*))
    };
}
