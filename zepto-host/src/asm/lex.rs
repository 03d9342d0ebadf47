//! Lexing: source lines -> statements and braces.

use super::{error, AsmError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Open(usize),
    Close(usize),
    Text(usize, String),
}

/// True if a `}` follows outside quotes.
fn close_follows(rest: &[char]) -> bool {
    let mut in_q = false;
    for c in rest {
        match c {
            '"' => in_q = !in_q,
            '}' if !in_q => return true,
            _ => {}
        }
    }
    false
}

/// Splits the source into statements and braces. `;` separates statements inside a
/// brace block opened and closed on the same line (the one-line PARALLEL form);
/// everywhere else it starts a comment.
pub(super) fn lex(source: &str, errors: &mut Vec<AsmError>) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, text) in source.lines().enumerate() {
        let line = i + 1;
        let chars: Vec<char> = text.chars().collect();
        let mut cur = String::new();
        let mut in_q = false;
        let mut depth = 0usize;
        let flush = |cur: &mut String, out: &mut Vec<Piece>| {
            let t = cur.trim();
            if !t.is_empty() {
                out.push(Piece::Text(line, t.to_string()));
            }
            cur.clear();
        };
        for (k, &c) in chars.iter().enumerate() {
            if in_q {
                cur.push(c);
                if c == '"' {
                    in_q = false;
                }
                continue;
            }
            match c {
                '"' => {
                    in_q = true;
                    cur.push(c);
                }
                '{' => {
                    flush(&mut cur, &mut out);
                    out.push(Piece::Open(line));
                    depth += 1;
                }
                '}' => {
                    flush(&mut cur, &mut out);
                    out.push(Piece::Close(line));
                    depth = depth.saturating_sub(1);
                }
                ';' => {
                    if depth > 0 && close_follows(chars.get(k + 1..).unwrap_or(&[])) {
                        flush(&mut cur, &mut out);
                    } else {
                        break;
                    }
                }
                _ => cur.push(c),
            }
        }
        if in_q {
            errors.push(error(line, "unterminated string (missing closing '\"')"));
            continue;
        }
        flush(&mut cur, &mut out);
    }
    out
}

/// Splits a statement into tokens at whitespace; a quoted string is one token.
pub(super) fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in s.chars() {
        if in_q {
            cur.push(c);
            if c == '"' {
                in_q = false;
            }
        } else if c == '"' {
            in_q = true;
            cur.push(c);
        } else if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
