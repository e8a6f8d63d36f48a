//! End-to-end tests of the `nncert` binary on the bundled example and on bad input.

use npyz::WriterBuilder;

mod common;

use common::{nncert, repo, text};

#[test]
fn verify_finds_and_writes_the_counterexample() {
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result.txt");
    let out = nncert(&[
        "verify",
        "examples/toy/toy.onnx",
        "examples/toy/robust_wide.vnnlib",
        "--timeout",
        "20",
        "--result-file",
        result.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let written = std::fs::read_to_string(&result).unwrap();
    assert_eq!(written, text(&out.stdout));
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("sat"));
    let body: String = lines.collect::<Vec<_>>().join(" ");
    for v in ["X_0", "X_4", "Y_0", "Y_2"] {
        assert!(body.contains(&format!("({v} ")), "{body}");
    }
    // Re-check the counterexample independently: the inputs lie in the box and class 0 is not the unique top.
    let vals: Vec<f64> = body
        .split(['(', ')', ' '])
        .filter_map(|t| t.parse::<f64>().ok())
        .collect();
    assert_eq!(vals.len(), 8, "{body}");
    let prop = nncert_spec::parse_file(&repo().join("examples/toy/robust_wide.vnnlib")).unwrap();
    assert!(prop.cases[0].input.contains(&vals[..5], 0.0));
    let y = &vals[5..];
    assert!(y[1] >= y[0] || y[2] >= y[0], "outputs {y:?}");
}

#[test]
fn verify_proves_the_narrow_property_with_bounds() {
    // scripts/make_examples.py proved this one by interval arithmetic, so CROWN must prove it too.
    let out = nncert(&[
        "verify",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "unsat\n");
    assert!(text(&out.stderr).contains("CROWN"), "{}", text(&out.stderr));
    let out = nncert(&[
        "bounds",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--method",
        "ibp",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("PROVED (unsat)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bounds_alpha_proves_on_dense_nets_and_runs_on_conv_nets() {
    let out = nncert(&[
        "bounds",
        "examples/toy/toy.onnx",
        "examples/toy/robust_narrow.vnnlib",
        "--method",
        "alpha",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("PROVED (unsat) by α-CROWN"),
        "{}",
        text(&out.stdout)
    );
    // The digits CNN has convolutions: the generic engine's α-CROWN, at least as tight as its CROWN.
    let dir = tempfile::tempdir().unwrap();
    let prop = dir.path().join("p.vnnlib");
    let mut text_prop = String::new();
    for i in 0..64 {
        text_prop += &format!(
            "(declare-const X_{i} Real)\n(assert (>= X_{i} 0.4))\n(assert (<= X_{i} 0.45))\n"
        );
    }
    for j in 0..10 {
        text_prop += &format!("(declare-const Y_{j} Real)\n");
    }
    text_prop += "(assert (<= Y_0 Y_1))\n";
    std::fs::write(&prop, text_prop).unwrap();
    let margin = |method: &str| -> f64 {
        let out = nncert(&[
            "bounds",
            "examples/digits/cnn.onnx",
            prop.to_str().unwrap(),
            "--method",
            method,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        if method == "alpha" {
            assert!(
                stdout.contains(
                    "by α-CROWN (20 iterations on the objective, 5 per intermediate node)"
                ),
                "{stdout}"
            );
        }
        let line = stdout
            .lines()
            .find(|l| l.contains("disjunct 0"))
            .unwrap_or_else(|| panic!("{stdout}"));
        let inner = line.split('[').nth(1).unwrap().split(']').next().unwrap();
        inner.parse().unwrap()
    };
    let (crown, alpha) = (margin("crown"), margin("alpha"));
    assert!(alpha >= crown, "α-CROWN {alpha} looser than CROWN {crown}");
}

#[test]
fn bad_input_gives_clear_errors_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    // Missing file.
    let out = nncert(&["inspect", "no/such/model.onnx"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("no/such/model.onnx"),
        "{}",
        text(&out.stderr)
    );
    // Malformed VNN-LIB: the message names file:line:col.
    let bad = dir.path().join("bad.vnnlib");
    std::fs::write(&bad, "(declare-const X_0 Real)\n(assert (<= X_0 0.5)\n").unwrap();
    let out = nncert(&["verify", "examples/toy/toy.onnx", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("bad.vnnlib:"), "{err}");
    // A property whose sizes do not fit the model.
    let small = dir.path().join("small.vnnlib");
    std::fs::write(
        &small,
        "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 0))\n",
    )
    .unwrap();
    let out = nncert(&["verify", "examples/toy/toy.onnx", small.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("does not fit"),
        "{}",
        text(&out.stderr)
    );
    // Garbage instead of a model.
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"\x08\x07garbage\xff\xff\xff").unwrap();
    let out = nncert(&["inspect", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    // Usage errors are errors too (3), not "unknown" (2).
    let out = nncert(&["verify"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn inspect_and_eval_work_on_the_example() {
    let out = nncert(&["inspect", "examples/toy/toy.onnx", "--graph"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("Linear"), "{s}");
    assert!(s.contains("(5 values)"), "{s}");

    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let mut buf = Vec::new();
    {
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[2, 5])
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend([0.1f32, 0.2, -0.3, 0.4, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
            .unwrap();
        w.finish().unwrap();
    }
    std::fs::write(&x, buf).unwrap();
    let y = dir.path().join("y.npy");
    let out = nncert(&[
        "eval",
        "examples/toy/toy.onnx",
        "--input",
        x.to_str().unwrap(),
        "--output",
        y.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bytes = std::fs::read(&y).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[2, 3]);
    let printed = nncert(&[
        "eval",
        "examples/toy/toy.onnx",
        "--input",
        x.to_str().unwrap(),
    ]);
    assert_eq!(text(&printed.stdout).lines().count(), 2);
    // A wrong-sized input is an error, not a panic.
    let out = nncert(&[
        "eval",
        "examples/toy/toy.onnx",
        "--input",
        y.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}
