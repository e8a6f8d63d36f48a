//! Every kind of error, with its place and message.

use nncert_spec::{SpecError, parse_file, parse_str};

const HEAD: &str = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n";

/// The error message for `text`, which must not parse.
fn err(text: &str) -> String {
    match parse_str(text, "f.vnnlib") {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the exact `f.vnnlib:LINE:COL: message` text.
#[track_caller]
fn check(text: &str, expected: &str) {
    assert_eq!(err(text), expected, "for input:\n{text}");
}

/// Asserts the place and that the message contains `needle`.
#[track_caller]
fn check_at(text: &str, line: u32, col: u32, needle: &str) {
    let e = parse_str(text, "f.vnnlib").expect_err("must not parse");
    match &e {
        SpecError::Parse {
            origin,
            line: l,
            col: c,
            message,
        } => {
            assert_eq!(origin, "f.vnnlib");
            assert_eq!((*l, *c), (line, col), "place of: {e}");
            assert!(message.contains(needle), "`{needle}` not in: {e}");
        }
        other => panic!("expected a located error, got {other}"),
    }
}

#[test]
fn syntax_errors() {
    check(
        "(declare-const X_0 Real)\n(assert (<= X_0 1)",
        "f.vnnlib:2:19: expected `)` to close the `(` opened at 2:1, found end of file",
    );
    check(
        "(declare-const X_0 Real))",
        "f.vnnlib:1:25: expected `(` or end of file, found `)` with no matching `(`",
    );
    check(
        "  foo",
        "f.vnnlib:1:3: expected `(` to start a command such as (declare-const X_0 Real) or \
         (assert ...), found `foo`",
    );
    check(
        "()",
        "f.vnnlib:1:2: expected an operator or command name after `(`, found `)`",
    );
    check(
        "((assert))",
        "f.vnnlib:1:2: expected an operator or command name after `(`, found `(`",
    );
    check(
        "(declare-fun X_0 () Real)",
        "f.vnnlib:1:2: expected a command (`declare-const` or `assert`), found `declare-fun`",
    );
    check(
        "(1 2)",
        "f.vnnlib:1:2: expected a command (`declare-const` or `assert`), found number `1`",
    );
    check_at("(assert \"x\")", 1, 9, "found a string literal");
    check_at(
        "(declare-const |X_0 Real)",
        1,
        16,
        "expected `|` to close this quoted symbol",
    );
}

#[test]
fn declaration_errors() {
    check(
        "(declare-const Z Real)",
        "f.vnnlib:1:16: expected a variable name X_<i> (input) or Y_<j> (output) with a decimal \
         index, found `Z`",
    );
    check_at(
        "(declare-const X_01 Real)",
        1,
        16,
        "expected a variable name",
    );
    check_at("(declare-const X_ Real)", 1, 16, "expected a variable name");
    check(
        "(declare-const X_0 Int)",
        "f.vnnlib:1:20: expected the type `Real`, found `Int` (only real variables are supported)",
    );
    check(
        "(declare-const X_0 Real)\n  (declare-const X_0 Real)",
        "f.vnnlib:2:18: `X_0` is declared twice",
    );
    check(
        "(declare-const X_0)",
        "f.vnnlib:1:19: expected the type `Real`, found `)`",
    );
    check(
        "(declare-const)",
        "f.vnnlib:1:15: expected a variable name X_<i> or Y_<j>, found `)`",
    );
    check(
        "(declare-const X_0 Real Real)",
        "f.vnnlib:1:25: expected `)` to end the declaration, found `Real`",
    );
    check(
        "(declare-const (X_0) Real)",
        "f.vnnlib:1:16: expected a variable name X_<i> or Y_<j>, found `(`",
    );
    check_at(
        "(declare-const X_99999999999 Real)",
        1,
        16,
        "expected a variable index below",
    );
}

#[test]
fn expression_errors() {
    check(
        &format!("{HEAD}(assert (<= X_1 1))"),
        "f.vnnlib:3:13: expected a declared variable, found `X_1`, which is not declared; add \
         (declare-const X_1 Real) before its first use",
    );
    // Used before its declaration.
    check_at(
        "(declare-const X_0 Real)\n(assert (>= Y_0 0))\n(declare-const Y_0 Real)",
        2,
        13,
        "`Y_0`, which is not declared",
    );
    check(
        &format!("{HEAD}(assert (<= X_0 foo))"),
        "f.vnnlib:3:17: expected a number, a declared variable (X_<i> or Y_<j>) or a \
         parenthesized expression, found the unknown symbol `foo`",
    );
    check(
        &format!("{HEAD}(assert (<= X_0 1.2.3))"),
        "f.vnnlib:3:17: expected a number such as 1, -0.5, .5 or 1e-3, found the malformed \
         number `1.2.3`",
    );
    check(
        &format!("{HEAD}(assert (<= X_0 1e999))"),
        "f.vnnlib:3:17: expected a finite number, found number `1e999`",
    );
    check(
        &format!("{HEAD}(assert (foo X_0 1))"),
        "f.vnnlib:3:10: expected an operator (and, or, <=, >=, <, >, =, +, -, *, /), found `foo`",
    );
    check(
        &format!("{HEAD}(assert (not (<= X_0 1)))"),
        "f.vnnlib:3:10: unsupported: operator `not` is not part of VNN-LIB 1.0 (supported: and, \
         or, <=, >=, <, >, =, +, -, *, /)",
    );
    check(
        &format!("{HEAD}(assert (+ X_0 1))"),
        "f.vnnlib:3:10: expected a formula (`and`, `or` or a comparison) inside `assert`, found \
         the arithmetic operator `+`",
    );
    check(
        &format!("{HEAD}(assert (<= (and) 1))"),
        "f.vnnlib:3:14: expected a term (number, variable, +, -, *, /) inside `<=`, found the \
         formula operator `and`",
    );
    check(
        &format!("{HEAD}(assert X_0)"),
        "f.vnnlib:3:9: expected a formula (`and`, `or` or a comparison such as (<= X_0 1)) inside \
         `assert`, found an input variable",
    );
    check(
        &format!("{HEAD}(assert (and (<= X_0 1) 2))"),
        "f.vnnlib:3:25: expected a formula (`and`, `or` or a comparison such as (<= X_0 1)) \
         inside `and`, found a number",
    );
    check(
        &format!("{HEAD}(assert (<= true 1))"),
        "f.vnnlib:3:13: expected a term (number, variable, +, -, *, /) inside `<=`, found a formula",
    );
    check(
        &format!("{HEAD}(assert (<= X_0 1) (<= X_0 2))"),
        "f.vnnlib:3:20: expected `)` to end the assertion (an `assert` takes one formula; combine \
         several with `and`), found `(`",
    );
    check(
        &format!("{HEAD}(assert true false)"),
        "f.vnnlib:3:14: expected `)` to end the assertion (an `assert` takes one formula; combine \
         several with `and`), found another formula",
    );
    check(
        &format!("{HEAD}(assert)"),
        "f.vnnlib:3:8: expected a formula to assert, found `)`",
    );
    check(
        &format!("{HEAD}(assert (<= X_0))"),
        "f.vnnlib:3:16: expected two operands for `<=`, found `)`",
    );
    check(
        &format!("{HEAD}(assert (<= (-) 1))"),
        "f.vnnlib:3:15: expected an operand for `-`, found `)`",
    );
    check(
        &format!("{HEAD}(assert (<= (/ X_0) 1))"),
        "f.vnnlib:3:19: expected a dividend and a divisor for `/`, found `)`",
    );
    check(
        &format!("{HEAD}(assert (and (assert true)))"),
        "f.vnnlib:3:15: expected an operator, found the command `assert`, which is only allowed \
         at top level",
    );
}

#[test]
fn unsupported_constraints() {
    check(
        &format!("{HEAD}(assert (<= X_0 Y_0))"),
        "f.vnnlib:3:9: unsupported: this constraint mixes input and output variables (X_0 and \
         Y_0); each constraint must bound a single input or relate outputs only",
    );
    check(
        "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n\
         (assert (and (>= X_0 0)\n   (<= (+ X_0 X_1) 1)))",
        "f.vnnlib:5:4: unsupported: this constraint relates several input variables (X_0 and \
         X_1); the input region must be a box, bounds on a single X_i each",
    );
    check(
        &format!("{HEAD}(assert (<= (* Y_0 (+ Y_0 1)) 1))"),
        "f.vnnlib:3:20: unsupported: a product of two terms that both contain variables is \
         nonlinear; VNN-LIB constraints must be linear",
    );
    check(
        &format!("{HEAD}(assert (<= (/ 1 Y_0) 1))"),
        "f.vnnlib:3:18: unsupported: division by an output variable; only division by a \
         constant is linear",
    );
    check(
        &format!("{HEAD}(assert (<= (/ Y_0 0.0) 1))"),
        "f.vnnlib:3:20: expected a non-zero divisor, found 0",
    );
    check(
        &format!("{HEAD}(assert (<= (* 1e300 Y_0 1e300) 1))"),
        "f.vnnlib:3:9: expected finite coefficients and constants, found a constraint whose \
         arithmetic overflows",
    );
    check(
        &format!("{HEAD}(assert (<= (* 1e-300 X_0) 1e300))"),
        "f.vnnlib:3:9: expected a finite bound on X_0, found one that overflows",
    );
}

#[test]
fn whole_property_errors() {
    check(
        "(declare-const Y_0 Real)",
        "f.vnnlib: expected at least one input variable, found none; declare them with \
         (declare-const X_0 Real) ...",
    );
    check(
        "(declare-const X_0 Real)",
        "f.vnnlib: expected at least one output variable, found none; declare them with \
         (declare-const Y_0 Real) ...",
    );
    check(
        "(declare-const X_0 Real)(declare-const X_2 Real)(declare-const Y_0 Real)",
        "f.vnnlib: expected the input variables to be declared as X_0 ... X_<n-1> without gaps, \
         found X_2 declared but X_1 missing",
    );
    check(
        &format!("{HEAD}(assert (>= X_0 0))"),
        "f.vnnlib: expected every input to have a finite lower and upper bound in every case, \
         found X_0 without an upper bound; add (assert (>= X_0 ...)) and (assert (<= X_0 ...))",
    );
    check_at_property(
        &format!("{HEAD}(assert (or (and (>= X_0 0) (<= X_0 1)) (<= X_0 3)))"),
        "found X_0 without a lower bound",
    );
    check_at_property(HEAD, "found X_0 without any bound");
}

#[track_caller]
fn check_at_property(text: &str, needle: &str) {
    let e = parse_str(text, "f.vnnlib").expect_err("must not parse");
    assert!(matches!(e, SpecError::Property { .. }), "{e}");
    assert!(e.to_string().contains(needle), "`{needle}` not in: {e}");
}

#[test]
fn dnf_blow_up_is_an_error_not_a_hang() {
    // (and (or a b) (or a b) ... 40 times) has 2^40 disjuncts.
    let mut text = String::from(HEAD);
    text += "(assert (>= X_0 0))(assert (<= X_0 1))\n(assert (and";
    for _ in 0..40 {
        text += " (or (<= Y_0 1) (>= Y_0 2))";
    }
    text += "))";
    let start = std::time::Instant::now();
    let e = err(&text);
    assert!(
        e.starts_with("f.vnnlib:4:9: the formula's disjunctive normal form is too large"),
        "{e}"
    );
    assert!(start.elapsed().as_secs() < 5);
    // The same blow-up across separate assertions is caught too (at the assertion that tips it).
    let mut text = String::from(HEAD);
    text += "(assert (>= X_0 0))(assert (<= X_0 1))\n";
    for _ in 0..40 {
        text += "(assert (or (<= Y_0 1) (>= Y_0 2)))\n";
    }
    let e = err(&text);
    // 2^16 disjuncts of 16 atoms pass the limit at the 16th `or`, on line 3 + 16.
    assert!(
        e.starts_with("f.vnnlib:19:1: the formula's disjunctive normal form is too large"),
        "{e}"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut text = String::from(HEAD);
    text += "(assert ";
    text += &"(and ".repeat(200_000);
    let e = err(&text);
    // `(assert` is level 1, so the 10000th `(and` is the first one too deep.
    let col = 9 + 5 * (nncert_spec::MAX_DEPTH - 1);
    assert_eq!(
        e,
        format!(
            "f.vnnlib:3:{col}: expected at most 10000 nested parentheses, found deeper nesting"
        )
    );
    // Deep but allowed nesting of terms works.
    let mut text = String::from(HEAD);
    text += "(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= ";
    text += &"(+ ".repeat(5000);
    text += "Y_0";
    text += &")".repeat(5000);
    text += " 1))";
    let p = parse_str(&text, "f.vnnlib").expect("deep terms parse");
    assert_eq!(p.cases[0].output.disjuncts[0].constraints[0].rhs, 1.0);
}

#[test]
fn io_error_names_the_path() {
    let path = std::path::Path::new("/nonexistent/dir/prop.vnnlib");
    let e = parse_file(path).unwrap_err();
    assert!(matches!(e, SpecError::Io { .. }));
    let s = e.to_string();
    assert!(
        s.starts_with("cannot read VNN-LIB file `/nonexistent/dir/prop.vnnlib`: "),
        "{s}"
    );
    assert!(s.contains("No such file"), "{s}");
}

#[test]
fn file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("nncert-spec-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.vnnlib");
    std::fs::write(&path, format!("{HEAD}\n(assert (<= X_0 Y_9))")).unwrap();
    let e = parse_file(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        e,
        format!(
            "{}:4:17: expected a declared variable, found `Y_9`, which is not declared; add \
             (declare-const Y_9 Real) before its first use",
            path.display()
        )
    );
}

#[test]
fn non_utf8_files_parse_or_fail_cleanly() {
    let dir = std::env::temp_dir().join(format!("nncert-spec-utf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.vnnlib");
    let mut bytes = b"; caf\xe9\n".to_vec();
    bytes.extend_from_slice(HEAD.as_bytes());
    bytes.extend_from_slice(b"(assert (<= 0 X_0 1))\n(assert (<= X_0 \xff))");
    std::fs::write(&path, &bytes).unwrap();
    let e = parse_file(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(e.ends_with(":5:17: expected a number, a declared variable (X_<i> or Y_<j>) or a parenthesized expression, found the unknown symbol `\u{fffd}`"), "{e}");
}
