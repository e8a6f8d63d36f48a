//! Every `.vnnlib` file of the VNN-COMP benchmarks in `../shared/benchmarks` parses, with the
//! right sizes and shapes. Skipped (loudly) when the benchmarks are not there.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use nncert_spec::{Property, parse_file, parse_str, write_vnnlib};

/// The expected (inputs, outputs) of a file of `suite`.
fn expected_dims(suite: &str, path: &Path) -> (usize, usize) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    match suite {
        "acasxu" => (5, 5),
        "mnist_fc" | "eran" => (784, 10),
        "oval21" | "cifar10_resnet" => (3072, 10),
        "collins_rul_cnn" => {
            // 20 features per time step, window `_w<steps>`.
            let w: usize = name
                .rsplit("_w")
                .next()
                .and_then(|s| s.strip_suffix(".vnnlib"))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no window in {name}"));
            (20 * w, 1)
        }
        "test" if name == "test_prop.vnnlib" => (5, 5),
        "test" => (1, 1),
        other => panic!("unknown suite {other}; add its sizes to this test"),
    }
}

/// Bounds read line by line from `(assert (<= X_i v))` / `(assert (>= X_i v))`, if every input
/// has exactly one of each: an independent check of the values the parser found.
fn line_bounds(text: &str, n: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    let mut lower = vec![None; n];
    let mut upper = vec![None; n];
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("(assert (") else {
            continue;
        };
        let Some(rest) = rest.strip_suffix("))") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(op), Some(var), Some(val), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let Some(i) = var.strip_prefix("X_").and_then(|s| s.parse::<usize>().ok()) else {
            continue;
        };
        let v: f64 = val.parse().ok()?;
        let slot = match op {
            "<=" => upper.get_mut(i)?,
            ">=" => lower.get_mut(i)?,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(v + 0.0);
    }
    let lower: Option<Vec<f64>> = lower.into_iter().collect();
    let upper: Option<Vec<f64>> = upper.into_iter().collect();
    Some((lower?, upper?))
}

/// The label of a classification property: the output with coefficient +1 in every disjunct
/// of the form `Y_label - Y_j <= 0`.
fn robustness_label(p: &Property) -> Option<usize> {
    let case = p.cases.first()?;
    let mut label = None;
    for conj in &case.output.disjuncts {
        let [c] = conj.constraints.as_slice() else {
            return None;
        };
        if c.rhs != 0.0 || c.coeffs.iter().filter(|&&a| a != 0.0).count() != 2 {
            return None;
        }
        let pos = c.coeffs.iter().position(|&a| a == 1.0)?;
        c.coeffs.iter().position(|&a| a == -1.0)?;
        if label.is_some_and(|l| l != pos) {
            return None;
        }
        label = Some(pos);
    }
    label
}

#[test]
fn every_benchmark_vnnlib_parses() {
    let Some(dir) = common::benchmarks_dir() else {
        return;
    };
    let files = common::vnnlib_files(&dir);
    assert!(files.len() > 200, "found only {} vnnlib files", files.len());
    let mut slowest = (Duration::ZERO, String::new(), 0usize);
    let mut total_bytes = 0usize;
    let mut line_checked = 0usize;
    let start_all = Instant::now();
    for (suite, path) in &files {
        let text = std::fs::read_to_string(path).expect("readable");
        total_bytes += text.len();
        let t0 = Instant::now();
        let p = match parse_file(path) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let dt = t0.elapsed();
        if dt > slowest.0 {
            slowest = (dt, path.display().to_string(), text.len());
        }
        let shown = path.display();

        assert_eq!(
            (p.num_inputs, p.num_outputs),
            expected_dims(suite, path),
            "{shown}"
        );
        p.check_dims(p.num_inputs, p.num_outputs).unwrap();
        assert!(!p.cases.is_empty(), "{shown}: no cases");
        for case in &p.cases {
            assert_eq!(case.input.dim(), p.num_inputs, "{shown}");
            assert_eq!(case.input.upper.len(), p.num_inputs, "{shown}");
            for (l, u) in case.input.lower.iter().zip(&case.input.upper) {
                assert!(
                    l.is_finite() && u.is_finite() && l <= u,
                    "{shown}: [{l}, {u}]"
                );
            }
            assert!(!case.output.disjuncts.is_empty(), "{shown}");
            for conj in &case.output.disjuncts {
                assert!(!conj.constraints.is_empty(), "{shown}");
                for c in &conj.constraints {
                    assert_eq!(c.coeffs.len(), p.num_outputs, "{shown}");
                    assert!(c.rhs.is_finite() && c.coeffs.iter().all(|a| a.is_finite()));
                    assert!(c.coeffs.iter().any(|&a| a != 0.0), "{shown}");
                }
            }
            // The center of the box is inside it.
            let mid: Vec<f64> = case
                .input
                .lower
                .iter()
                .zip(&case.input.upper)
                .map(|(l, u)| l + (u - l) / 2.0)
                .collect();
            assert!(case.input.contains(&mid, 0.0), "{shown}");
        }

        // Independent check of every bound on files written one bound per line.
        if p.cases.len() == 1
            && let Some((lower, upper)) = line_bounds(&text, p.num_inputs)
        {
            assert_eq!(p.cases[0].input.lower, lower, "{shown}");
            assert_eq!(p.cases[0].input.upper, upper, "{shown}");
            line_checked += 1;
        }

        // Classification suites: one box, 9 disjuncts Y_label - Y_j <= 0, and the label in the
        // file's first comment when it states one.
        if matches!(
            suite.as_str(),
            "mnist_fc" | "eran" | "oval21" | "cifar10_resnet"
        ) {
            assert_eq!(p.cases.len(), 1, "{shown}");
            assert_eq!(p.cases[0].output.disjuncts.len(), 9, "{shown}");
            let label = robustness_label(&p).unwrap_or_else(|| panic!("{shown}: no label"));
            if let Some(stated) = text
                .lines()
                .next()
                .and_then(|l| l.split("label: ").nth(1))
                .and_then(|s| s.trim_end_matches(['.', ' ']).parse::<usize>().ok())
            {
                assert_eq!(label, stated, "{shown}");
            }
        }

        // Writing and reading back gives the same property.
        let again = parse_str(&write_vnnlib(&p), "written").unwrap();
        assert_eq!(again, p, "{shown}: write/parse round trip");
    }

    // All but the or-of-boxes files state their bounds one per line.
    assert!(
        line_checked > 200,
        "bounds checked line by line in only {line_checked} files"
    );

    // ACAS Xu shapes, per property.
    let acas = |name: &str| {
        let path = dir.join("acasxu/vnnlib").join(name);
        parse_file(&path).unwrap()
    };
    let shape = |p: &Property| -> Vec<Vec<usize>> {
        p.cases
            .iter()
            .map(|c| {
                c.output
                    .disjuncts
                    .iter()
                    .map(|d| d.constraints.len())
                    .collect()
            })
            .collect()
    };
    assert_eq!(shape(&acas("prop_1.vnnlib")), vec![vec![1]]);
    assert_eq!(shape(&acas("prop_2.vnnlib")), vec![vec![4]]);
    assert_eq!(shape(&acas("prop_5.vnnlib")), vec![vec![1, 1, 1, 1]]);
    assert_eq!(shape(&acas("prop_6.vnnlib")), vec![vec![1, 1, 1, 1]; 2]);
    assert_eq!(shape(&acas("prop_7.vnnlib")), vec![vec![3, 3]]);
    assert_eq!(shape(&acas("prop_8.vnnlib")), vec![vec![2, 2, 2]]);
    let p1 = acas("prop_1.vnnlib");
    assert_eq!(p1.cases[0].input.lower, vec![0.6, -0.5, -0.5, 0.45, -0.5]);
    assert_eq!(
        p1.cases[0].input.upper,
        vec![0.679857769, 0.5, 0.5, 0.5, -0.45]
    );
    // (assert (>= Y_0 3.991125645861615)) -> -Y_0 <= -3.991125645861615
    let c = &p1.cases[0].output.disjuncts[0].constraints[0];
    assert_eq!(c.coeffs, vec![-1.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(c.rhs, -3.991125645861615);
    let p6 = acas("prop_6.vnnlib");
    assert_eq!(p6.cases[0].input.lower[1], 0.11140846);
    assert_eq!(p6.cases[1].input.upper[1], -0.11140846);

    // The largest file, best of 3.
    let largest = files
        .iter()
        .max_by_key(|(_, f)| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .map(|(_, f)| f.clone())
        .unwrap();
    let best = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            parse_file(&largest).unwrap();
            t0.elapsed()
        })
        .min()
        .unwrap();
    eprintln!(
        "largest file: {} ({} bytes) parses in {best:.2?}",
        largest.display(),
        std::fs::metadata(&largest).unwrap().len()
    );
    assert!(
        best < Duration::from_secs(1),
        "the largest file takes {best:?}"
    );

    eprintln!(
        "parsed {} vnnlib files ({:.1} MB) in {:.2?}; slowest: {} ({} bytes) in {:.2?}",
        files.len(),
        total_bytes as f64 / 1e6,
        start_all.elapsed(),
        slowest.1,
        slowest.2,
        slowest.0
    );
}
