//! End-to-end tests of `nncert attack` and `nncert corrupt` on the bundled digits and cancer examples.

use std::path::Path;

mod common;

use common::{nncert, repo, text};

fn read_npy_f32(p: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

const DIGITS: [&str; 6] = [
    "--data",
    "examples/digits/x_test.npy",
    "--labels",
    "examples/digits/y_test.npy",
    "--range",
    "0,1",
];

#[test]
fn attack_digits_cnn_writes_checked_results_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let adv = dir.path().join("adv");
    let mut args = vec!["attack", "examples/digits/cnn.onnx"];
    args.extend(DIGITS);
    args.extend([
        "--limit",
        "48",
        "--eps",
        "0.1,0.05",
        "--attack",
        "ensemble",
        "--steps",
        "10",
        "--queries",
        "100",
        "--out",
        out.to_str().unwrap(),
        "--save-adv",
        adv.to_str().unwrap(),
        "--minimal-eps",
        "0.2",
        "--bisection-steps",
        "3",
    ]);
    let o = nncert(&args);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("robust accuracy"),
        "{}",
        text(&o.stdout)
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let res = doc["results"].as_array().unwrap();
    assert_eq!(res.len(), 2);
    assert_eq!(res[0]["eps"].as_f64().unwrap() as f32, 0.1);
    let acc: Vec<f64> = res
        .iter()
        .map(|r| r["robust_accuracy"].as_f64().unwrap())
        .collect();
    assert!(
        acc[0] <= acc[1],
        "robust accuracy at 0.1 above that at 0.05: {acc:?}"
    );
    assert!(
        acc[0] < doc["clean_accuracy"]["accuracy"].as_f64().unwrap(),
        "ε=0.1 breaks some digits"
    );
    for r in res {
        let (lo, hi) = (
            r["ci95"][0].as_f64().unwrap(),
            r["ci95"][1].as_f64().unwrap(),
        );
        let a = r["robust_accuracy"].as_f64().unwrap();
        assert!(lo <= a && a <= hi);
        assert_eq!(r["samples"].as_array().unwrap().len(), 48);
    }
    let minimal = doc["minimal_eps"].as_array().unwrap();
    assert_eq!(minimal.len(), 48);
    let first = res[0]["samples"].as_array().unwrap();
    for (m, s) in minimal.iter().zip(first) {
        if s["clean_pred"] != s["label"] {
            assert_eq!(
                m.as_f64(),
                Some(0.0),
                "a misclassified sample has minimal ε 0"
            );
        } else if let Some(e) = m.as_f64() {
            assert!(e > 0.0 && e <= 0.2, "minimal ε {e} outside (0, 0.2]");
        }
    }
    // Saved examples: in the ball and range, and misclassified when re-executed by `nncert eval`.
    let (xs, x) = read_npy_f32(&repo().join("examples/digits/x_test.npy"));
    assert_eq!(xs[1], 64);
    let advf = adv.join("adv_eps0.1.npy");
    let (shape, a) = read_npy_f32(&advf);
    let idx = {
        let bytes = std::fs::read(adv.join("adv_eps0.1_index.npy")).unwrap();
        npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<i64>()
            .unwrap()
    };
    assert_eq!(shape[0] as usize, idx.len());
    assert!(!idx.is_empty());
    for (k, &i) in idx.iter().enumerate() {
        for j in 0..64 {
            let (v, v0) = (a[k * 64 + j], x[i as usize * 64 + j]);
            assert!((0.0..=1.0).contains(&v) && (v as f64 - v0 as f64).abs() <= 0.1f32 as f64);
        }
    }
    let preds = dir.path().join("p.npy");
    let o = nncert(&[
        "eval",
        "examples/digits/cnn.onnx",
        "-i",
        advf.to_str().unwrap(),
        "-o",
        preds.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let bytes = std::fs::read(&preds).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let z: Vec<f64> = match npy.dtype() {
        npyz::DType::Plain(t) if t.size_field() == 4 => npy
            .into_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        _ => npy.into_vec::<f64>().unwrap(),
    };
    let labels = {
        let bytes = std::fs::read(repo().join("examples/digits/y_test.npy")).unwrap();
        npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<i64>()
            .unwrap()
    };
    for (k, &i) in idx.iter().enumerate() {
        let row = &z[k * 10..(k + 1) * 10];
        let pred = (0..10).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        assert_ne!(
            pred as i64, labels[i as usize],
            "saved example {k} (sample {i}) is not adversarial"
        );
    }
}

#[test]
fn corrupt_cancer_tabular_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.json");
    let o = nncert(&[
        "corrupt",
        "examples/cancer/mlp.onnx",
        "--data",
        "examples/cancer/x_test.npy",
        "--labels",
        "examples/cancer/y_test.npy",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let rows = doc["report"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10, "2 tabular corruptions x 5 severities");
    assert!(doc["report"]["clean"]["accuracy"].as_f64().unwrap() > 0.9);
    assert!(text(&o.stdout).contains("missing_values"));
}

#[test]
fn corrupt_digits_mlp_as_images() {
    let mut args = vec!["corrupt", "examples/digits/mlp.onnx"];
    args.extend(DIGITS);
    args.extend(["--limit", "60", "--kind", "image", "--image-shape", "1,8,8"]);
    let o = nncert(&args);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let table = text(&o.stdout);
    for c in [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "gaussian_blur",
        "brightness",
        "contrast",
        "pixelate",
        "jpeg",
    ] {
        assert!(table.contains(c), "{c} missing from\n{table}");
    }
    // Image corruptions without a declared range are refused.
    let o = nncert(&[
        "corrupt",
        "examples/digits/cnn.onnx",
        "--data",
        "examples/digits/x_test.npy",
        "--labels",
        "examples/digits/y_test.npy",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("finite valid input range"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    // Labels of another dataset: counts differ.
    let o = nncert(&[
        "attack",
        "examples/digits/mlp.onnx",
        "--data",
        "examples/digits/x_test.npy",
        "--labels",
        "examples/cancer/y_test.npy",
        "--eps",
        "0.1",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let e = text(&o.stderr);
    assert!(
        e.contains("cancer/y_test.npy") && e.contains("labels for 360 samples"),
        "{e}"
    );
    // Samples of the wrong size for the model.
    let o = nncert(&[
        "corrupt",
        "examples/digits/mlp.onnx",
        "--data",
        "examples/cancer/x_test.npy",
        "--labels",
        "examples/cancer/y_test.npy",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("model takes 64"),
        "{}",
        text(&o.stderr)
    );
    // Out-of-range data for the declared range; a negative radius.
    let mut args = vec![
        "attack",
        "examples/cancer/mlp.onnx",
        "--data",
        "examples/cancer/x_test.npy",
    ];
    args.extend([
        "--labels",
        "examples/cancer/y_test.npy",
        "--range",
        "0,1",
        "--eps",
        "0.1",
    ]);
    let o = nncert(&args);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("outside the declared input range"),
        "{}",
        text(&o.stderr)
    );
    let mut args = vec!["attack", "examples/digits/mlp.onnx"];
    args.extend(DIGITS);
    args.extend(["--eps", "-0.1"]);
    let o = nncert(&args);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn csv_and_png_folder_data_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    // The cancer test set as CSV with a header, label first.
    let (xs, x) = read_npy_f32(&repo().join("examples/cancer/x_test.npy"));
    let labels = {
        let bytes = std::fs::read(repo().join("examples/cancer/y_test.npy")).unwrap();
        npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<i64>()
            .unwrap()
    };
    let f = xs[1] as usize;
    let mut csv = String::from("label");
    for j in 0..f {
        csv += &format!(",f{j}");
    }
    csv += "\n";
    for (i, l) in labels.iter().enumerate() {
        csv += &l.to_string();
        for v in &x[i * f..(i + 1) * f] {
            csv += &format!(",{v:e}");
        }
        csv += "\n";
    }
    let path = dir.path().join("cancer.csv");
    std::fs::write(&path, csv).unwrap();
    let o = nncert(&[
        "attack",
        "examples/cancer/mlp.onnx",
        "--data",
        path.to_str().unwrap(),
        "--label-column",
        "0",
        "--eps",
        "0.5",
        "--attack",
        "fgsm",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("clean accuracy 0.9474"),
        "{}",
        text(&o.stderr)
    );

    // Two digits as 8x8 PNGs in class folders 0/ and 1/, read back with the 1/255 default scale.
    let (_, dx) = read_npy_f32(&repo().join("examples/digits/x_test.npy"));
    for (k, class) in ["0", "1"].iter().enumerate() {
        std::fs::create_dir_all(dir.path().join("png").join(class)).unwrap();
        let pix: Vec<u8> = dx[k * 64..(k + 1) * 64]
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        image::GrayImage::from_raw(8, 8, pix)
            .unwrap()
            .save(dir.path().join("png").join(class).join("a.png"))
            .unwrap();
    }
    let o = nncert(&[
        "attack",
        "examples/digits/cnn.onnx",
        "--data",
        dir.path().join("png").to_str().unwrap(),
        "--range",
        "0,1",
        "--eps",
        "0.05",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("2 samples of shape [1, 8, 8]"),
        "{}",
        text(&o.stderr)
    );
}
