//! Command-line argument parsing helpers shared by the `zepto` subcommands.

use std::fmt;

/// A command-line error with the process exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    /// Exit code: 2 bad input, 3 no answer (timeout, unreachable), 4 the device
    /// answered with an error or exception, 1 anything else; 0 only for
    /// [`CliError::closed_pipe`].
    pub code: i32,
    /// Message for stderr.
    pub message: String,
}

impl CliError {
    /// Bad input (exit code 2).
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
    /// No answer (exit code 3).
    pub fn no_answer(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }
    /// The device reported an error or exception (exit code 4).
    pub fn device(message: impl Into<String>) -> Self {
        Self {
            code: 4,
            message: message.into(),
        }
    }
    /// Standard output was closed by its reader (`zepto demo | head -1`): the command
    /// ends quietly with exit code 0.
    pub fn closed_pipe() -> Self {
        Self {
            code: 0,
            message: String::new(),
        }
    }
    /// True for [`CliError::closed_pipe`].
    pub fn is_closed_pipe(&self) -> bool {
        self.code == 0
    }
    /// Any other failure (exit code 1).
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::other(e.to_string())
    }
}

/// Parses hex, ignoring spaces, `:` and `-` separators and an optional `0x`.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, CliError> {
    let t: String = s
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':' && *c != '-')
        .collect();
    if !t.len().is_multiple_of(2) {
        return Err(CliError::input(format!(
            "bad hex '{s}': odd number of digits ({})",
            t.len()
        )));
    }
    (0..t.len())
        .step_by(2)
        .map(|i| {
            t.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| {
                    CliError::input(format!(
                        "bad hex '{s}': '{}' is not a hex byte",
                        t.get(i..i + 2).unwrap_or("")
                    ))
                })
        })
        .collect()
}

/// Formats bytes as lowercase hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` with thousands separators: 10,003.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats bytes as spaced hex ("01 02 ff").
pub fn spaced_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a 128-bit key given as 32 hex digits.
pub fn parse_key(s: &str) -> Result<[u8; 16], CliError> {
    let bytes = parse_hex(s).map_err(|e| CliError::input(format!("bad key: {}", e.message)))?;
    bytes.as_slice().try_into().map_err(|_| {
        CliError::input(format!(
            "bad key: expected 16 bytes (32 hex digits), got {}",
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parsing() {
        assert_eq!(
            parse_hex("0x01 ff:0a-10").unwrap(),
            vec![1, 0xff, 0x0a, 0x10]
        );
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_hex("abc").unwrap_err().code, 2);
        assert!(parse_hex("zz").unwrap_err().message.contains("'zz'"));
        assert_eq!(hex(&[0, 0xab]), "00ab");
        assert_eq!(spaced_hex(&[1, 2]), "01 02");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(472), "472");
        assert_eq!(thousands(10_003), "10,003");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn key_parsing() {
        assert_eq!(parse_key(&"00".repeat(16)).unwrap(), [0; 16]);
        let e = parse_key("0011").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("got 2"), "{}", e.message);
    }
}
