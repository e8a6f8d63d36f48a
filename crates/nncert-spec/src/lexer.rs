//! A hand-written lexer over bytes for the S-expressions of VNN-LIB, with line/column tracking.
//!
//! Tokens borrow from the input (byte ranges); nothing is allocated per token.

/// A place in the input: 1-based line and 1-based column counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
}

/// Kinds of token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    /// A symbol or a number: a maximal run of non-delimiter bytes.
    Atom,
    /// A `|quoted symbol|`; the range excludes the bars.
    Quoted,
    Eof,
}

/// A token: kind, byte range in the input and the place where it starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    pub kind: Tok,
    pub start: usize,
    pub end: usize,
    pub pos: Pos,
}

/// A lexical error.
#[derive(Debug)]
pub(crate) struct LexError {
    pub pos: Pos,
    pub message: String,
}

pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    i: usize,
    line: u32,
    col: u32,
}

/// Bytes that end an atom.
fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b'(' | b')' | b';' | b'"' | b'|'
    )
}

/// Number of characters in a UTF-8 byte run (continuation bytes do not count).
fn chars_in(bytes: &[u8]) -> u32 {
    let n = bytes.iter().filter(|&&b| (b & 0xC0) != 0x80).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        // A UTF-8 byte order mark is not part of the text.
        let i = if src.starts_with(&[0xEF, 0xBB, 0xBF]) {
            3
        } else {
            0
        };
        Lexer {
            src,
            i,
            line: 1,
            col: 1,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    /// Advances over `[self.i, end)`, which contains no newline.
    fn advance_same_line(&mut self, end: usize) {
        let run = self.src.get(self.i..end).unwrap_or(&[]);
        self.col = self.col.saturating_add(chars_in(run));
        self.i = end;
    }

    /// Advances over `[self.i, end)`, which may contain newlines.
    fn advance_multi_line(&mut self, end: usize) {
        let run = self.src.get(self.i..end).unwrap_or(&[]);
        for &b in run {
            if b == b'\n' {
                self.line = self.line.saturating_add(1);
                self.col = 1;
            } else if (b & 0xC0) != 0x80 {
                self.col = self.col.saturating_add(1);
            }
        }
        self.i = end;
    }

    /// The next token; `Tok::Eof` (repeatedly) at the end of the input.
    pub fn next_token(&mut self) -> Result<Token, LexError> {
        let src = self.src;
        loop {
            let Some(&b) = src.get(self.i) else {
                return Ok(Token {
                    kind: Tok::Eof,
                    start: self.i,
                    end: self.i,
                    pos: self.pos(),
                });
            };
            match b {
                b'\n' => {
                    self.i += 1;
                    self.line = self.line.saturating_add(1);
                    self.col = 1;
                }
                b' ' | b'\t' | b'\r' | 0x0b | 0x0c => {
                    self.i += 1;
                    self.col = self.col.saturating_add(1);
                }
                b';' => {
                    // Comment up to (not including) the end of the line.
                    let end = src[self.i..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .map_or(src.len(), |k| self.i + k);
                    self.advance_same_line(end);
                }
                b'(' | b')' => {
                    let tok = Token {
                        kind: if b == b'(' { Tok::LParen } else { Tok::RParen },
                        start: self.i,
                        end: self.i + 1,
                        pos: self.pos(),
                    };
                    self.i += 1;
                    self.col = self.col.saturating_add(1);
                    return Ok(tok);
                }
                b'|' => {
                    let pos = self.pos();
                    let start = self.i + 1;
                    let Some(k) = src[start..].iter().position(|&c| c == b'|') else {
                        return Err(LexError {
                            pos,
                            message: "expected `|` to close this quoted symbol, found end of file"
                                .into(),
                        });
                    };
                    let end = start + k;
                    self.advance_multi_line(end + 1);
                    return Ok(Token {
                        kind: Tok::Quoted,
                        start,
                        end,
                        pos,
                    });
                }
                b'"' => {
                    return Err(LexError {
                        pos: self.pos(),
                        message: "expected a symbol, number or parenthesis, found a string \
                                  literal (VNN-LIB has no strings)"
                            .into(),
                    });
                }
                _ => {
                    let pos = self.pos();
                    let start = self.i;
                    let end = src[start..]
                        .iter()
                        .position(|&c| is_delim(c))
                        .map_or(src.len(), |k| start + k);
                    self.advance_same_line(end);
                    return Ok(Token {
                        kind: Tok::Atom,
                        start,
                        end,
                        pos,
                    });
                }
            }
        }
    }
}

/// Whether an atom is meant as a number (so that a malformed one is reported as such rather than
/// as an unknown symbol): it starts with a digit, or with a sign or dot followed by a digit or dot.
pub(crate) fn looks_numeric(s: &[u8]) -> bool {
    match s {
        [d, ..] if d.is_ascii_digit() => true,
        [b'+' | b'-' | b'.', d, ..] => d.is_ascii_digit() || *d == b'.',
        _ => false,
    }
}

/// Parses a decimal number: `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`.
/// Returns `None` if the text is not of that form. The value may be infinite (overflow).
pub(crate) fn parse_number(s: &[u8]) -> Option<f64> {
    let n = s.len();
    let mut k = 0;
    if k < n && (s[k] == b'+' || s[k] == b'-') {
        k += 1;
    }
    let int_start = k;
    while k < n && s[k].is_ascii_digit() {
        k += 1;
    }
    let mut digits = k - int_start;
    if k < n && s[k] == b'.' {
        k += 1;
        let frac_start = k;
        while k < n && s[k].is_ascii_digit() {
            k += 1;
        }
        digits += k - frac_start;
    }
    if digits == 0 {
        return None;
    }
    if k < n && (s[k] == b'e' || s[k] == b'E') {
        k += 1;
        if k < n && (s[k] == b'+' || s[k] == b'-') {
            k += 1;
        }
        let exp_start = k;
        while k < n && s[k].is_ascii_digit() {
            k += 1;
        }
        if k == exp_start {
            return None;
        }
    }
    if k != n {
        return None;
    }
    // The text is ASCII by construction, and of a form `f64::from_str` accepts.
    std::str::from_utf8(s).ok()?.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Tok, String, u32, u32)> {
        let mut lx = Lexer::new(src.as_bytes());
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().expect("lexes");
            out.push((
                t.kind,
                src[t.start..t.end].to_string(),
                t.pos.line,
                t.pos.col,
            ));
            if t.kind == Tok::Eof {
                return out;
            }
        }
    }

    #[test]
    fn tokens_and_positions() {
        let toks = kinds("(a b) ; comment (\n  (|q r| 1.5e3)");
        assert_eq!(
            toks,
            vec![
                (Tok::LParen, "(".into(), 1, 1),
                (Tok::Atom, "a".into(), 1, 2),
                (Tok::Atom, "b".into(), 1, 4),
                (Tok::RParen, ")".into(), 1, 5),
                (Tok::LParen, "(".into(), 2, 3),
                (Tok::Quoted, "q r".into(), 2, 4),
                (Tok::Atom, "1.5e3".into(), 2, 10),
                (Tok::RParen, ")".into(), 2, 15),
                (Tok::Eof, "".into(), 2, 16),
            ]
        );
    }

    #[test]
    fn columns_count_characters() {
        let toks = kinds("; é\n é (x");
        assert_eq!(toks[0], (Tok::Atom, "é".into(), 2, 2));
        assert_eq!(toks[1], (Tok::LParen, "(".into(), 2, 4));
    }

    #[test]
    fn numbers() {
        for (s, v) in [
            ("1", 1.0),
            ("-0.5", -0.5),
            (".5", 0.5),
            ("5.", 5.0),
            ("+1", 1.0),
            ("1E+2", 100.0),
            ("1e-3", 1e-3),
            ("-.25e1", -2.5),
        ] {
            assert_eq!(parse_number(s.as_bytes()), Some(v), "{s}");
        }
        for s in [
            "", "-", ".", "e5", "1e", "1e+", "1.2.3", "inf", "nan", "1x", "--1", "0x10",
        ] {
            assert_eq!(parse_number(s.as_bytes()), None, "{s}");
        }
        assert!(looks_numeric(b"1.2.3"));
        assert!(looks_numeric(b"-.5"));
        assert!(!looks_numeric(b"-"));
        assert!(!looks_numeric(b"X_0"));
    }

    #[test]
    fn unterminated_quote_and_string() {
        let mut lx = Lexer::new(b"  |abc");
        let e = lx.next_token().unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (1, 3));
        let mut lx = Lexer::new(b"\"s\"");
        assert!(lx.next_token().is_err());
    }
}
