//! The VNN-LIB parser: a shift-reduce reader over the token stream.
//!
//! There is no recursion anywhere: each `(` pushes a frame on an explicit stack and each `)`
//! reduces the frame to a value (a number, a linear term or a formula in DNF) that is handed to
//! the enclosing frame. Top-level commands (`declare-const`, `assert`) are executed when they close.
//! Formulas are kept in disjunctive normal form over a table of normalized atoms; the conjunction
//! of all assertions is formed at the end, with the assertions that are single conjunctions
//! (typically the input bounds) kept once instead of being copied into every disjunct.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::lexer::{LexError, Lexer, Pos, Tok, Token, looks_numeric, parse_number};
use crate::{Case, Conjunction, InputBox, LinearConstraint, OutputCondition, Property, SpecError};

/// Maximum nesting depth of parentheses.
pub const MAX_DEPTH: usize = 10_000;
/// Maximum size of the expansion to disjunctive normal form: the atoms copied and the disjuncts
/// created by distributing `and` over `or`, beyond what is written in the file.
pub const MAX_DNF_ATOMS: usize = 1_000_000;
/// Maximum number of `f64` values in the dense [`Property`] (box bounds plus constraint
/// coefficients), about 128 MiB.
pub const MAX_DENSE_VALUES: usize = 1 << 24;
/// Variable indices must be below this.
const MAX_VAR_INDEX: u32 = 1 << 24;
/// Output variables `Y_j` are numbered `OUT | j`, inputs `X_i` are numbered `i`.
const OUT: u32 = 1 << 31;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmp {
    Le,
    Ge,
    Lt,
    Gt,
    Eq,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Head {
    /// `(` read, operator not yet read.
    Pending,
    /// An ignored command (`check-sat`, ...) and everything inside it.
    Skip,
    Declare,
    Assert,
    And,
    Or,
    Cmp(Cmp),
    Add,
    Sub,
    Mul,
    Div,
}

/// What a frame expects of its arguments.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Formula,
    Term,
    Other,
}

impl Head {
    fn wants(self) -> Want {
        match self {
            Head::Assert | Head::And | Head::Or => Want::Formula,
            Head::Cmp(_) | Head::Add | Head::Sub | Head::Mul | Head::Div => Want::Term,
            Head::Pending | Head::Skip | Head::Declare => Want::Other,
        }
    }

    fn is_formula(self) -> bool {
        matches!(self, Head::And | Head::Or | Head::Cmp(_))
    }

    fn name(self) -> &'static str {
        match self {
            Head::Pending => "(",
            Head::Skip => "command",
            Head::Declare => "declare-const",
            Head::Assert => "assert",
            Head::And => "and",
            Head::Or => "or",
            Head::Cmp(Cmp::Le) => "<=",
            Head::Cmp(Cmp::Ge) => ">=",
            Head::Cmp(Cmp::Lt) => "<",
            Head::Cmp(Cmp::Gt) => ">",
            Head::Cmp(Cmp::Eq) => "=",
            Head::Add => "+",
            Head::Sub => "-",
            Head::Mul => "*",
            Head::Div => "/",
        }
    }
}

/// A linear term `Σ coeff·var + c`; `terms` normalized (sorted by variable, no duplicates, no zeros)
/// where stated.
#[derive(Clone, Debug, Default)]
struct Lin {
    terms: Vec<(u32, f64)>,
    c: f64,
}

impl Lin {
    fn normalize(&mut self) {
        self.terms.sort_unstable_by_key(|t| t.0);
        let mut out = 0;
        for k in 0..self.terms.len() {
            let (v, a) = self.terms[k];
            if out > 0 && self.terms[out - 1].0 == v {
                self.terms[out - 1].1 += a;
            } else {
                self.terms[out] = (v, a);
                out += 1;
            }
        }
        self.terms.truncate(out);
        self.terms.retain(|t| t.1 != 0.0);
    }
}

/// A formula in disjunctive normal form over atom ids: disjunct `k` is
/// `atoms[ends[k-1]..ends[k]]` (with `ends[-1] = 0`). No disjunct is `false`, one empty disjunct is
/// `true`.
#[derive(Clone, Debug)]
struct Dnf {
    atoms: Vec<usize>,
    ends: Vec<usize>,
}

impl Dnf {
    fn truth() -> Dnf {
        Dnf {
            atoms: Vec::new(),
            ends: vec![0],
        }
    }

    fn falsity() -> Dnf {
        Dnf {
            atoms: Vec::new(),
            ends: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn disjunct(&self, k: usize) -> &[usize] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.atoms[start..self.ends[k]]
    }

    fn disjuncts(&self) -> impl Iterator<Item = &[usize]> {
        (0..self.len()).map(move |k| self.disjunct(k))
    }

    /// Appends the disjuncts of `other` (disjunction).
    fn or_with(&mut self, other: Dnf) {
        let off = self.atoms.len();
        self.atoms.extend_from_slice(&other.atoms);
        self.ends.extend(other.ends.iter().map(|e| e + off));
    }
}

/// A normalized atom.
#[derive(Clone, Debug)]
enum Atom {
    /// `lo <= X_var <= hi` (one side may be infinite).
    In { var: u32, lo: f64, hi: f64 },
    /// `Σ out_terms[start..start+len] <= rhs`, variables are `OUT | j`.
    Out {
        start: usize,
        len: usize,
        rhs: f64,
        strict: bool,
    },
}

/// A value of a reduced expression.
#[derive(Debug)]
enum Val {
    Num(f64),
    Var(u32),
    Lin(Lin),
    Dnf(Dnf),
}

impl Val {
    fn describe(&self) -> &'static str {
        match self {
            Val::Num(_) => "a number",
            Val::Var(v) if *v & OUT != 0 => "an output variable",
            Val::Var(_) => "an input variable",
            Val::Lin(_) => "an arithmetic term",
            Val::Dnf(_) => "a formula",
        }
    }

    fn to_lin(&self) -> Lin {
        match self {
            Val::Num(c) => Lin {
                terms: Vec::new(),
                c: *c,
            },
            Val::Var(v) => Lin {
                terms: vec![(*v, 1.0)],
                c: 0.0,
            },
            Val::Lin(l) => l.clone(),
            // Callers only pass terms; a formula contributes nothing.
            Val::Dnf(_) => Lin::default(),
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Val::Num(c) => Some(*c),
            _ => None,
        }
    }
}

/// A canonical value for a normalized linear term.
fn lin_val(l: Lin) -> Val {
    match l.terms.as_slice() {
        [] => Val::Num(l.c),
        [(v, a)] if *a == 1.0 && l.c == 0.0 => Val::Var(*v),
        _ => Val::Lin(l),
    }
}

#[derive(Debug)]
struct Arg {
    val: Val,
    pos: Pos,
}

#[derive(Debug)]
struct Frame {
    open: Pos,
    head: Head,
    args: Vec<Arg>,
    /// For `declare-const`: the variable being declared.
    decl: Option<u32>,
}

/// The name of variable `id`.
fn var_name(id: u32) -> String {
    if id & OUT != 0 {
        format!("Y_{}", id & !OUT)
    } else {
        format!("X_{id}")
    }
}

enum VarName {
    NotVar,
    Var(u32),
    TooLarge,
}

/// `X_<i>` or `Y_<j>` with a decimal index without leading zeros.
fn parse_var_name(s: &[u8]) -> VarName {
    let (out, digits) = match s {
        [b'X', b'_', rest @ ..] => (false, rest),
        [b'Y', b'_', rest @ ..] => (true, rest),
        _ => return VarName::NotVar,
    };
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return VarName::NotVar;
    }
    let mut idx: u64 = 0;
    for &d in digits {
        idx = idx * 10 + u64::from(d - b'0');
        if idx >= u64::from(MAX_VAR_INDEX) {
            return VarName::TooLarge;
        }
    }
    // idx < MAX_VAR_INDEX < 2^31 here.
    let idx = idx as u32;
    VarName::Var(if out { OUT | idx } else { idx })
}

/// Names the ignored top-level commands (SMT-LIB commands that some VNN-LIB files carry).
fn is_ignored_command(s: &[u8]) -> bool {
    matches!(
        s,
        b"check-sat"
            | b"get-model"
            | b"get-value"
            | b"get-info"
            | b"exit"
            | b"set-logic"
            | b"set-info"
            | b"set-option"
    )
}

/// Formats a piece of the input for a message: backquoted, escaped, shortened.
fn quote(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        s.push('…');
    }
    format!("`{}`", s.escape_debug())
}

pub(crate) struct Parser<'a> {
    src: &'a [u8],
    origin: &'a str,
    lexer: Lexer<'a>,
    stack: Vec<Frame>,
    spare: Vec<Vec<Arg>>,
    declared: [Vec<bool>; 2],
    counts: [usize; 2],
    atoms: Vec<Atom>,
    out_terms: Vec<(u32, f64)>,
    /// Atoms of the assertions that are a single conjunction.
    common: Vec<usize>,
    /// Assertions with several disjuncts, with the place of their `(`.
    multi: Vec<(Dnf, Pos)>,
    /// Some assertion is `false`.
    any_false: bool,
    dnf_used: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a [u8], origin: &'a str) -> Self {
        Parser {
            src,
            origin,
            lexer: Lexer::new(src),
            stack: Vec::new(),
            spare: Vec::new(),
            declared: [Vec::new(), Vec::new()],
            counts: [0, 0],
            atoms: Vec::new(),
            out_terms: Vec::new(),
            common: Vec::new(),
            multi: Vec::new(),
            any_false: false,
            dnf_used: 0,
        }
    }

    fn err(&self, pos: Pos, message: impl Into<String>) -> SpecError {
        SpecError::Parse {
            origin: self.origin.to_string(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }

    fn prop_err(&self, message: impl Into<String>) -> SpecError {
        SpecError::Property {
            origin: self.origin.to_string(),
            message: message.into(),
        }
    }

    fn text(&self, tok: &Token) -> &'a [u8] {
        self.src.get(tok.start..tok.end).unwrap_or(&[])
    }

    fn show(&self, tok: &Token) -> String {
        match tok.kind {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Eof => "end of file".into(),
            Tok::Atom => {
                let t = self.text(tok);
                if looks_numeric(t) {
                    format!("number {}", quote(t))
                } else {
                    quote(t)
                }
            }
            Tok::Quoted => {
                let mut b = Vec::with_capacity(tok.end - tok.start + 2);
                b.push(b'|');
                b.extend_from_slice(self.text(tok));
                b.push(b'|');
                quote(&b)
            }
        }
    }

    /// Parses the whole input.
    pub(crate) fn parse(mut self) -> Result<Property, SpecError> {
        loop {
            let tok = self
                .lexer
                .next_token()
                .map_err(|LexError { pos, message }| self.err(pos, message))?;
            match tok.kind {
                Tok::LParen => self.on_lparen(&tok)?,
                Tok::RParen => self.on_rparen(&tok)?,
                Tok::Atom | Tok::Quoted => self.on_atom(&tok)?,
                Tok::Eof => {
                    if let Some(frame) = self.stack.last() {
                        let (l, c) = (frame.open.line, frame.open.col);
                        return Err(self.err(
                            tok.pos,
                            format!(
                                "expected `)` to close the `(` opened at {l}:{c}, found end of file"
                            ),
                        ));
                    }
                    return self.finish();
                }
            }
        }
    }

    fn on_lparen(&mut self, tok: &Token) -> Result<(), SpecError> {
        if let Some(top) = self.stack.last() {
            let found = "found `(`";
            match top.head {
                Head::Pending => {
                    return Err(self.err(
                        tok.pos,
                        format!("expected an operator or command name after `(`, {found}"),
                    ));
                }
                Head::Declare => {
                    let what = match top.args.len() + usize::from(top.decl.is_some()) {
                        0 => "a variable name X_<i> or Y_<j>",
                        1 => "the type `Real`",
                        _ => "`)` to end the declaration",
                    };
                    return Err(self.err(tok.pos, format!("expected {what}, {found}")));
                }
                Head::Assert if !top.args.is_empty() => {
                    return Err(self.err(
                        tok.pos,
                        format!(
                            "expected `)` to end the assertion (an `assert` takes one formula; \
                             combine several with `and`), {found}"
                        ),
                    ));
                }
                _ => {}
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.err(
                tok.pos,
                format!("expected at most {MAX_DEPTH} nested parentheses, found deeper nesting"),
            ));
        }
        let parent_skips = self.stack.last().is_some_and(|f| f.head == Head::Skip);
        let args = self.spare.pop().unwrap_or_default();
        self.stack.push(Frame {
            open: tok.pos,
            head: if parent_skips {
                Head::Skip
            } else {
                Head::Pending
            },
            args,
            decl: None,
        });
        Ok(())
    }

    fn on_atom(&mut self, tok: &Token) -> Result<(), SpecError> {
        let depth = self.stack.len();
        let Some(top) = self.stack.last() else {
            return Err(self.err(
                tok.pos,
                format!(
                    "expected `(` to start a command such as (declare-const X_0 Real) or \
                     (assert ...), found {}",
                    self.show(tok)
                ),
            ));
        };
        match top.head {
            Head::Pending => {
                let parent = if depth >= 2 {
                    self.stack.get(depth - 2).map(|f| f.head)
                } else {
                    None
                };
                let head = self.head_for(tok, parent)?;
                if let Some(top) = self.stack.last_mut() {
                    top.head = head;
                }
                Ok(())
            }
            Head::Skip => Ok(()),
            Head::Declare => self.declare_arg(tok),
            _ => {
                let val = self.atom_value(tok)?;
                self.deliver(Arg { val, pos: tok.pos })
            }
        }
    }

    /// The operator named by `tok`, which follows a `(` whose enclosing frame has head `parent`.
    fn head_for(&self, tok: &Token, parent: Option<Head>) -> Result<Head, SpecError> {
        let t = self.text(tok);
        let Some(parent) = parent else {
            return match t {
                b"declare-const" => Ok(Head::Declare),
                b"assert" => Ok(Head::Assert),
                _ if is_ignored_command(t) => Ok(Head::Skip),
                _ => Err(self.err(
                    tok.pos,
                    format!(
                        "expected a command (`declare-const` or `assert`), found {}",
                        self.show(tok)
                    ),
                )),
            };
        };
        let head = match t {
            b"and" => Head::And,
            b"or" => Head::Or,
            b"<=" => Head::Cmp(Cmp::Le),
            b">=" => Head::Cmp(Cmp::Ge),
            b"<" => Head::Cmp(Cmp::Lt),
            b">" => Head::Cmp(Cmp::Gt),
            b"=" => Head::Cmp(Cmp::Eq),
            b"+" => Head::Add,
            b"-" => Head::Sub,
            b"*" => Head::Mul,
            b"/" => Head::Div,
            b"declare-const" | b"assert" => {
                return Err(self.err(
                    tok.pos,
                    format!(
                        "expected an operator, found the command {}, which is only allowed at \
                         top level",
                        self.show(tok)
                    ),
                ));
            }
            b"not" | b"=>" | b"xor" | b"ite" | b"distinct" | b"let" | b"abs" | b"div" | b"mod"
            | b"exists" | b"forall" => {
                return Err(self.err(
                    tok.pos,
                    format!(
                        "unsupported: operator {} is not part of VNN-LIB 1.0 (supported: and, \
                         or, <=, >=, <, >, =, +, -, *, /)",
                        self.show(tok)
                    ),
                ));
            }
            _ => {
                return Err(self.err(
                    tok.pos,
                    format!(
                        "expected an operator (and, or, <=, >=, <, >, =, +, -, *, /), found {}",
                        self.show(tok)
                    ),
                ));
            }
        };
        match parent.wants() {
            Want::Formula if !head.is_formula() => Err(self.err(
                tok.pos,
                format!(
                    "expected a formula (`and`, `or` or a comparison) inside `{}`, found the \
                     arithmetic operator {}",
                    parent.name(),
                    self.show(tok)
                ),
            )),
            Want::Term if head.is_formula() => Err(self.err(
                tok.pos,
                format!(
                    "expected a term (number, variable, +, -, *, /) inside `{}`, found the \
                     formula operator {}",
                    parent.name(),
                    self.show(tok)
                ),
            )),
            _ => Ok(head),
        }
    }

    /// An argument of `declare-const`.
    fn declare_arg(&mut self, tok: &Token) -> Result<(), SpecError> {
        let Some(top) = self.stack.last() else {
            return Ok(());
        };
        let t = self.text(tok);
        match (top.decl, top.args.len()) {
            (None, _) => {
                let id = match parse_var_name(t) {
                    VarName::Var(id) => id,
                    VarName::TooLarge => {
                        return Err(self.err(
                            tok.pos,
                            format!(
                                "expected a variable index below {MAX_VAR_INDEX}, found {}",
                                self.show(tok)
                            ),
                        ));
                    }
                    VarName::NotVar => {
                        return Err(self.err(
                            tok.pos,
                            format!(
                                "expected a variable name X_<i> (input) or Y_<j> (output) with \
                                 a decimal index, found {}",
                                self.show(tok)
                            ),
                        ));
                    }
                };
                if self.is_declared(id) {
                    return Err(self.err(tok.pos, format!("`{}` is declared twice", var_name(id))));
                }
                if let Some(top) = self.stack.last_mut() {
                    top.decl = Some(id);
                }
                Ok(())
            }
            (Some(_), 0) => {
                if t != b"Real" {
                    return Err(self.err(
                        tok.pos,
                        format!(
                            "expected the type `Real`, found {} (only real variables are \
                             supported)",
                            self.show(tok)
                        ),
                    ));
                }
                // Record that the type was seen.
                if let Some(top) = self.stack.last_mut() {
                    top.args.push(Arg {
                        val: Val::Num(0.0),
                        pos: tok.pos,
                    });
                }
                Ok(())
            }
            (Some(_), _) => Err(self.err(
                tok.pos,
                format!(
                    "expected `)` to end the declaration, found {}",
                    self.show(tok)
                ),
            )),
        }
    }

    fn is_declared(&self, id: u32) -> bool {
        let (kind, idx) = if id & OUT != 0 {
            (1, (id & !OUT) as usize)
        } else {
            (0, id as usize)
        };
        self.declared[kind].get(idx).copied().unwrap_or(false)
    }

    fn declare(&mut self, id: u32) {
        let (kind, idx) = if id & OUT != 0 {
            (1, (id & !OUT) as usize)
        } else {
            (0, id as usize)
        };
        let v = &mut self.declared[kind];
        if v.len() <= idx {
            v.resize(idx + 1, false);
        }
        if !v[idx] {
            v[idx] = true;
            self.counts[kind] += 1;
        }
    }

    /// The value of a number or symbol used as an operand.
    fn atom_value(&self, tok: &Token) -> Result<Val, SpecError> {
        let t = self.text(tok);
        if tok.kind == Tok::Atom && looks_numeric(t) {
            return match parse_number(t) {
                Some(v) if v.is_finite() => Ok(Val::Num(v)),
                Some(_) => Err(self.err(
                    tok.pos,
                    format!("expected a finite number, found {}", self.show(tok)),
                )),
                None => Err(self.err(
                    tok.pos,
                    format!(
                        "expected a number such as 1, -0.5, .5 or 1e-3, found the malformed {}",
                        self.show(tok)
                    ),
                )),
            };
        }
        match t {
            b"true" => return Ok(Val::Dnf(Dnf::truth())),
            b"false" => return Ok(Val::Dnf(Dnf::falsity())),
            _ => {}
        }
        match parse_var_name(t) {
            VarName::Var(id) if self.is_declared(id) => Ok(Val::Var(id)),
            VarName::Var(id) => {
                let name = var_name(id);
                Err(self.err(
                    tok.pos,
                    format!(
                        "expected a declared variable, found `{name}`, which is not declared; \
                         add (declare-const {name} Real) before its first use"
                    ),
                ))
            }
            VarName::TooLarge => Err(self.err(
                tok.pos,
                format!(
                    "expected a variable index below {MAX_VAR_INDEX}, found {}",
                    self.show(tok)
                ),
            )),
            VarName::NotVar => Err(self.err(
                tok.pos,
                format!(
                    "expected a number, a declared variable (X_<i> or Y_<j>) or a parenthesized \
                     expression, found the unknown symbol {}",
                    self.show(tok)
                ),
            )),
        }
    }

    /// Hands an argument to the innermost open frame, checking that it is of the right kind.
    fn deliver(&mut self, arg: Arg) -> Result<(), SpecError> {
        let Some(top) = self.stack.last() else {
            return Err(self.err(
                arg.pos,
                "internal error: an argument outside any expression",
            ));
        };
        let head = top.head;
        match head.wants() {
            Want::Formula => {
                if !matches!(arg.val, Val::Dnf(_)) {
                    return Err(self.err(
                        arg.pos,
                        format!(
                            "expected a formula (`and`, `or` or a comparison such as (<= X_0 1)) \
                             inside `{}`, found {}",
                            head.name(),
                            arg.val.describe()
                        ),
                    ));
                }
                if head == Head::Assert && !top.args.is_empty() {
                    return Err(self.err(
                        arg.pos,
                        "expected `)` to end the assertion (an `assert` takes one formula; \
                         combine several with `and`), found another formula",
                    ));
                }
            }
            Want::Term => {
                if matches!(arg.val, Val::Dnf(_)) {
                    return Err(self.err(
                        arg.pos,
                        format!(
                            "expected a term (number, variable, +, -, *, /) inside `{}`, found \
                             a formula",
                            head.name()
                        ),
                    ));
                }
            }
            Want::Other => {
                if head == Head::Skip {
                    return Ok(());
                }
                return Err(self.err(
                    arg.pos,
                    format!(
                        "internal error: unexpected argument inside `{}`",
                        head.name()
                    ),
                ));
            }
        }
        if let Some(top) = self.stack.last_mut() {
            top.args.push(arg);
        }
        Ok(())
    }

    fn on_rparen(&mut self, tok: &Token) -> Result<(), SpecError> {
        let Some(mut frame) = self.stack.pop() else {
            return Err(self.err(
                tok.pos,
                "expected `(` or end of file, found `)` with no matching `(`",
            ));
        };
        let head = frame.head;
        let mut args = std::mem::take(&mut frame.args);
        let result = self.reduce(&frame, &mut args, tok);
        args.clear();
        self.spare.push(args);
        if let Some(val) = result? {
            self.deliver(Arg {
                val,
                pos: frame.open,
            })?;
        } else if head.is_formula() || head.wants() == Want::Term {
            // Unreachable: such heads always produce a value.
            return Err(self.err(frame.open, "internal error: expression without value"));
        }
        Ok(())
    }

    /// Reduces a closed frame to its value (`None` for commands).
    fn reduce(
        &mut self,
        frame: &Frame,
        args: &mut Vec<Arg>,
        close: &Token,
    ) -> Result<Option<Val>, SpecError> {
        let found_close = "found `)`";
        match frame.head {
            Head::Pending => Err(self.err(
                close.pos,
                format!("expected an operator or command name after `(`, {found_close}"),
            )),
            Head::Skip => Ok(None),
            Head::Declare => match (frame.decl, args.len()) {
                (None, _) => Err(self.err(
                    close.pos,
                    format!("expected a variable name X_<i> or Y_<j>, {found_close}"),
                )),
                (Some(_), 0) => Err(self.err(
                    close.pos,
                    format!("expected the type `Real`, {found_close}"),
                )),
                (Some(id), _) => {
                    self.declare(id);
                    Ok(None)
                }
            },
            Head::Assert => {
                let Some(arg) = args.pop() else {
                    return Err(self.err(
                        close.pos,
                        format!("expected a formula to assert, {found_close}"),
                    ));
                };
                if let Val::Dnf(dnf) = arg.val {
                    match dnf.len() {
                        0 => self.any_false = true,
                        1 => self.common.extend_from_slice(&dnf.atoms),
                        _ => self.multi.push((dnf, frame.open)),
                    }
                }
                Ok(None)
            }
            Head::And => {
                let mut acc = Dnf::truth();
                for arg in args.drain(..) {
                    if let Val::Dnf(d) = arg.val {
                        acc = self.and(acc, d, frame.open)?;
                    }
                }
                Ok(Some(Val::Dnf(acc)))
            }
            Head::Or => {
                let mut acc = Dnf::falsity();
                for arg in args.drain(..) {
                    if let Val::Dnf(d) = arg.val {
                        acc.or_with(d);
                    }
                }
                Ok(Some(Val::Dnf(acc)))
            }
            Head::Cmp(op) => {
                if args.len() < 2 {
                    return Err(self.err(
                        close.pos,
                        format!(
                            "expected two operands for `{}`, {found_close}",
                            frame.head.name()
                        ),
                    ));
                }
                let mut dnf = Dnf::truth();
                for pair in args.windows(2) {
                    let mut d = pair[0].val.to_lin();
                    let r = pair[1].val.to_lin();
                    d.terms.extend(r.terms.iter().map(|&(v, a)| (v, -a)));
                    d.c -= r.c;
                    d.normalize();
                    if !self.atomize(op, &d, frame.open, &mut dnf.atoms)? {
                        return Ok(Some(Val::Dnf(Dnf::falsity())));
                    }
                }
                dnf.ends[0] = dnf.atoms.len();
                Ok(Some(Val::Dnf(dnf)))
            }
            Head::Add | Head::Sub => {
                if args.is_empty() {
                    return Err(self.err(
                        close.pos,
                        format!(
                            "expected an operand for `{}`, {found_close}",
                            frame.head.name()
                        ),
                    ));
                }
                let mut acc = Lin::default();
                let single_minus = frame.head == Head::Sub && args.len() == 1;
                for (k, arg) in args.iter().enumerate() {
                    let sign = if frame.head == Head::Sub && (k > 0 || single_minus) {
                        -1.0
                    } else {
                        1.0
                    };
                    match &arg.val {
                        Val::Num(c) => acc.c += sign * c,
                        Val::Var(v) => acc.terms.push((*v, sign)),
                        Val::Lin(l) => {
                            acc.c += sign * l.c;
                            acc.terms
                                .extend(l.terms.iter().map(|&(v, a)| (v, sign * a)));
                        }
                        Val::Dnf(_) => {}
                    }
                }
                acc.normalize();
                Ok(Some(lin_val(acc)))
            }
            Head::Mul => {
                if args.is_empty() {
                    return Err(self.err(
                        close.pos,
                        format!("expected an operand for `*`, {found_close}"),
                    ));
                }
                let mut factor = 1.0;
                let mut var_part: Option<&Val> = None;
                for arg in args.iter() {
                    match arg.val.num() {
                        Some(c) => factor *= c,
                        None => {
                            if var_part.is_some() {
                                return Err(self.err(
                                    arg.pos,
                                    "unsupported: a product of two terms that both contain \
                                     variables is nonlinear; VNN-LIB constraints must be linear",
                                ));
                            }
                            var_part = Some(&arg.val);
                        }
                    }
                }
                let mut l = match var_part {
                    Some(v) => v.to_lin(),
                    None => Lin::default(),
                };
                if var_part.is_none() {
                    l.c = factor;
                } else {
                    l.c *= factor;
                    for t in &mut l.terms {
                        t.1 *= factor;
                    }
                }
                l.normalize();
                Ok(Some(lin_val(l)))
            }
            Head::Div => {
                if args.len() < 2 {
                    return Err(self.err(
                        close.pos,
                        format!("expected a dividend and a divisor for `/`, {found_close}"),
                    ));
                }
                let mut divisor = 1.0;
                for arg in &args[1..] {
                    match arg.val.num() {
                        Some(c) if c != 0.0 => divisor *= c,
                        Some(_) => {
                            return Err(self.err(arg.pos, "expected a non-zero divisor, found 0"));
                        }
                        None => {
                            return Err(self.err(
                                arg.pos,
                                format!(
                                    "unsupported: division by {}; only division by a constant \
                                     is linear",
                                    arg.val.describe()
                                ),
                            ));
                        }
                    }
                }
                let mut l = args[0].val.to_lin();
                l.c /= divisor;
                for t in &mut l.terms {
                    t.1 /= divisor;
                }
                l.normalize();
                Ok(Some(lin_val(l)))
            }
        }
    }

    /// Turns `d op 0` into atoms appended to `out`; returns `false` if the atom is constantly
    /// false (and `true` otherwise, with nothing appended if it is constantly true).
    fn atomize(
        &mut self,
        op: Cmp,
        d: &Lin,
        pos: Pos,
        out: &mut Vec<usize>,
    ) -> Result<bool, SpecError> {
        if !d.c.is_finite() || d.terms.iter().any(|t| !t.1.is_finite()) {
            return Err(self.err(
                pos,
                "expected finite coefficients and constants, found a constraint whose \
                 arithmetic overflows",
            ));
        }
        let c = d.c;
        if d.terms.is_empty() {
            return Ok(match op {
                Cmp::Le => c <= 0.0,
                Cmp::Ge => c >= 0.0,
                Cmp::Lt => c < 0.0,
                Cmp::Gt => c > 0.0,
                Cmp::Eq => c == 0.0,
            });
        }
        let n_in = d.terms.iter().filter(|t| t.0 & OUT == 0).count();
        if n_in > 0 && n_in < d.terms.len() {
            let x = d.terms.iter().find(|t| t.0 & OUT == 0).map_or(0, |t| t.0);
            let y = d.terms.iter().find(|t| t.0 & OUT != 0).map_or(OUT, |t| t.0);
            return Err(self.err(
                pos,
                format!(
                    "unsupported: this constraint mixes input and output variables ({} and {}); \
                     each constraint must bound a single input or relate outputs only",
                    var_name(x),
                    var_name(y)
                ),
            ));
        }
        if n_in > 1 {
            return Err(self.err(
                pos,
                format!(
                    "unsupported: this constraint relates several input variables ({} and {}); \
                     the input region must be a box, bounds on a single X_i each",
                    var_name(d.terms[0].0),
                    var_name(d.terms[1].0)
                ),
            ));
        }
        if n_in == 1 {
            let (var, a) = d.terms[0];
            let v = -c / a;
            if !v.is_finite() {
                return Err(self.err(
                    pos,
                    format!(
                        "expected a finite bound on {}, found one that overflows",
                        var_name(var)
                    ),
                ));
            }
            let v = v + 0.0; // -0 -> +0, so that equal boxes compare equal bit for bit
            let (lo, hi) = match (op, a > 0.0) {
                (Cmp::Le | Cmp::Lt, true) | (Cmp::Ge | Cmp::Gt, false) => (f64::NEG_INFINITY, v),
                (Cmp::Le | Cmp::Lt, false) | (Cmp::Ge | Cmp::Gt, true) => (v, f64::INFINITY),
                (Cmp::Eq, _) => (v, v),
            };
            out.push(self.atoms.len());
            self.atoms.push(Atom::In { var, lo, hi });
            return Ok(true);
        }
        let mut push = |this: &mut Self, sign: f64, rhs: f64, strict: bool| {
            let start = this.out_terms.len();
            this.out_terms
                .extend(d.terms.iter().map(|&(v, a)| (v, sign * a)));
            out.push(this.atoms.len());
            this.atoms.push(Atom::Out {
                start,
                len: d.terms.len(),
                rhs: rhs + 0.0,
                strict,
            });
        };
        match op {
            Cmp::Le | Cmp::Lt => push(self, 1.0, -c, op == Cmp::Lt),
            Cmp::Ge | Cmp::Gt => push(self, -1.0, c, op == Cmp::Gt),
            Cmp::Eq => {
                push(self, 1.0, -c, false);
                push(self, -1.0, c, false);
            }
        }
        Ok(true)
    }

    /// Conjunction of two DNFs (distributing `and` over `or`), within the size budget.
    fn and(&mut self, mut a: Dnf, b: Dnf, pos: Pos) -> Result<Dnf, SpecError> {
        if a.len() == 0 || b.len() == 0 {
            return Ok(Dnf::falsity());
        }
        if a.len() == 1 && b.len() == 1 {
            a.atoms.extend_from_slice(&b.atoms);
            a.ends[0] = a.atoms.len();
            return Ok(a);
        }
        let (na, nb) = (a.len(), b.len());
        let cost = (nb - 1)
            .saturating_mul(a.atoms.len())
            .saturating_add((na - 1).saturating_mul(b.atoms.len()))
            .saturating_add(na.saturating_mul(nb));
        if self.dnf_used.saturating_add(cost) > MAX_DNF_ATOMS {
            return Err(self.err(
                pos,
                format!(
                    "the formula's disjunctive normal form is too large (more than \
                     {MAX_DNF_ATOMS} atoms after distributing `and` over `or`); split the \
                     property into several files or write it as an `or` of boxes"
                ),
            ));
        }
        self.dnf_used += cost;
        let mut out = Dnf {
            atoms: Vec::with_capacity(nb * a.atoms.len() + na * b.atoms.len()),
            ends: Vec::with_capacity(na * nb),
        };
        for da in a.disjuncts() {
            for db in b.disjuncts() {
                out.atoms.extend_from_slice(da);
                out.atoms.extend_from_slice(db);
                out.ends.push(out.atoms.len());
            }
        }
        Ok(out)
    }

    /// Dense output constraint of an `Out` atom.
    fn dense(&self, atom: usize, m: usize) -> Option<LinearConstraint> {
        let Some(Atom::Out {
            start,
            len,
            rhs,
            strict,
        }) = self.atoms.get(atom)
        else {
            return None;
        };
        let mut coeffs = vec![0.0; m];
        for &(v, a) in self.out_terms.get(*start..start + len).unwrap_or(&[]) {
            if let Some(slot) = coeffs.get_mut((v & !OUT) as usize) {
                *slot += a;
            }
        }
        Some(LinearConstraint {
            coeffs,
            rhs: *rhs,
            strict: *strict,
        })
    }

    /// Checks the declarations and builds the property from the assertions.
    fn finish(mut self) -> Result<Property, SpecError> {
        for (kind, letter, role) in [(0, 'X', "input"), (1, 'Y', "output")] {
            let declared = &self.declared[kind];
            if self.counts[kind] == 0 {
                return Err(self.prop_err(format!(
                    "expected at least one {role} variable, found none; declare them with \
                     (declare-const {letter}_0 Real) ..."
                )));
            }
            if let Some(missing) = declared.iter().position(|d| !d) {
                return Err(self.prop_err(format!(
                    "expected the {role} variables to be declared as {letter}_0 ... {letter}_<n-1> \
                     without gaps, found {letter}_{} declared but {letter}_{missing} missing",
                    declared.len() - 1
                )));
            }
        }
        let n = self.counts[0];
        let m = self.counts[1];

        // The common conjunction: a box and output constraints shared by every disjunct.
        let mut lower = vec![f64::NEG_INFINITY; n];
        let mut upper = vec![f64::INFINITY; n];
        let mut common_out = Vec::new();
        for &a in &self.common {
            match self.atoms.get(a) {
                Some(Atom::In { var, lo, hi }) => {
                    let i = *var as usize;
                    if let (Some(l), Some(u)) = (lower.get_mut(i), upper.get_mut(i)) {
                        *l = l.max(*lo);
                        *u = u.min(*hi);
                    }
                }
                Some(Atom::Out { .. }) => common_out.push(a),
                None => {}
            }
        }
        let empty = Property {
            num_inputs: n,
            num_outputs: m,
            cases: Vec::new(),
        };
        if self.any_false || lower.iter().zip(&upper).any(|(l, u)| l > u) {
            return Ok(empty);
        }

        // The product of the assertions that have several disjuncts.
        let mut product = Dnf::truth();
        for (dnf, pos) in std::mem::take(&mut self.multi) {
            product = self.and(product, dnf, pos)?;
        }

        let unbounded: Vec<u32> = (0..n)
            .filter(|&i| !(lower[i].is_finite() && upper[i].is_finite()))
            .map(|i| i as u32)
            .collect();

        // Group the disjuncts by their box: a box is the common box with sparse overrides.
        struct Group {
            overrides: Vec<(u32, f64, f64)>,
            conjunctions: Vec<Vec<usize>>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<Vec<(u32, u64, u64)>, usize> = HashMap::new();
        let mut bounds: Vec<(u32, f64, f64)> = Vec::new();
        for disjunct in product.disjuncts() {
            bounds.clear();
            let mut outs = Vec::new();
            for &a in disjunct {
                match self.atoms.get(a) {
                    Some(Atom::In { var, lo, hi }) => bounds.push((*var, *lo, *hi)),
                    Some(Atom::Out { .. }) => outs.push(a),
                    None => {}
                }
            }
            bounds.sort_unstable_by_key(|b| b.0);
            let mut overrides: Vec<(u32, f64, f64)> = Vec::with_capacity(bounds.len());
            for &(var, lo, hi) in &bounds {
                match overrides.last_mut() {
                    Some(last) if last.0 == var => {
                        last.1 = last.1.max(lo);
                        last.2 = last.2.min(hi);
                    }
                    _ => {
                        let i = var as usize;
                        let (cl, cu) = (
                            lower.get(i).copied().unwrap_or(f64::NEG_INFINITY),
                            upper.get(i).copied().unwrap_or(f64::INFINITY),
                        );
                        overrides.push((var, cl.max(lo), cu.min(hi)));
                    }
                }
            }
            overrides.retain(|&(var, lo, hi)| {
                let i = var as usize;
                lower.get(i) != Some(&lo) || upper.get(i) != Some(&hi)
            });
            if overrides.iter().any(|&(_, lo, hi)| lo > hi) {
                continue; // empty box: this disjunct can never be a counterexample
            }
            // Every input must be bounded on both sides.
            for &var in &unbounded {
                let i = var as usize;
                let (lo, hi) = match overrides.binary_search_by_key(&var, |o| o.0) {
                    Ok(k) => (overrides[k].1, overrides[k].2),
                    Err(_) => (lower[i], upper[i]),
                };
                if !lo.is_finite() || !hi.is_finite() {
                    let side = if lo.is_finite() {
                        "an upper"
                    } else if hi.is_finite() {
                        "a lower"
                    } else {
                        "any"
                    };
                    return Err(self.prop_err(format!(
                        "expected every input to have a finite lower and upper bound in every \
                         case, found X_{var} without {side} bound; add (assert (>= X_{var} ...)) \
                         and (assert (<= X_{var} ...))"
                    )));
                }
            }
            let key: Vec<(u32, u64, u64)> = overrides
                .iter()
                .map(|&(v, l, h)| (v, l.to_bits(), h.to_bits()))
                .collect();
            match index.entry(key) {
                Entry::Occupied(e) => {
                    if let Some(g) = groups.get_mut(*e.get()) {
                        g.conjunctions.push(outs);
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(groups.len());
                    groups.push(Group {
                        overrides,
                        conjunctions: vec![outs],
                    });
                }
            }
        }

        // Materialize, within the size limit.
        let mut values: usize = 0;
        for g in &groups {
            values = values.saturating_add(n.saturating_mul(2));
            for c in &g.conjunctions {
                values = values
                    .saturating_add((common_out.len().saturating_add(c.len())).saturating_mul(m));
            }
        }
        if values > MAX_DENSE_VALUES {
            return Err(self.prop_err(format!(
                "the property is too large: {} cases need {values} numbers (limit \
                 {MAX_DENSE_VALUES}); split it into several files",
                groups.len()
            )));
        }
        let common_dense: Vec<LinearConstraint> = common_out
            .iter()
            .filter_map(|&a| self.dense(a, m))
            .collect();
        let mut cases = Vec::with_capacity(groups.len());
        for g in groups {
            let mut lo = lower.clone();
            let mut hi = upper.clone();
            for (var, l, h) in g.overrides {
                let i = var as usize;
                if let (Some(sl), Some(sh)) = (lo.get_mut(i), hi.get_mut(i)) {
                    *sl = l;
                    *sh = h;
                }
            }
            let disjuncts = g
                .conjunctions
                .iter()
                .map(|outs| {
                    let mut constraints = common_dense.clone();
                    constraints.extend(outs.iter().filter_map(|&a| self.dense(a, m)));
                    Conjunction { constraints }
                })
                .collect();
            cases.push(Case {
                input: InputBox {
                    lower: lo,
                    upper: hi,
                },
                output: OutputCondition { disjuncts },
            });
        }
        Ok(Property {
            num_inputs: n,
            num_outputs: m,
            cases,
        })
    }
}
