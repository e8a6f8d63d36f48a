//! The bundled examples: nncert's f32 evaluation agrees with onnxruntime's outputs (committed by
//! scripts/make_digits.py), and the test accuracy is the one the training script recorded.

use nncert_data::{Preprocess, Source, load, read_npy};
use nncert_empirical::Model;
use nncert_empirical::metrics::Accuracy;
use std::path::{Path, PathBuf};

fn ex(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(p)
}

#[test]
fn bundled_models_match_onnxruntime() {
    for (dir, model, shape) in [
        ("digits", "mlp", vec![64]),
        ("digits", "cnn", vec![1, 8, 8]),
        ("cancer", "mlp", vec![30]),
    ] {
        let graph = nncert_model::load_model(&ex(&format!("{dir}/{model}.onnx"))).unwrap();
        let m = Model::new(&graph).unwrap();
        let data = load(
            &Source::parse(ex(&format!("{dir}/x_test.npy")).to_str().unwrap()),
            Some(&Source::parse(
                ex(&format!("{dir}/y_test.npy")).to_str().unwrap(),
            )),
            &Preprocess::default(),
            Some(&shape),
        )
        .unwrap();
        let z = m.logits(data.x.view()).unwrap();
        let golden = read_npy(&ex(&format!("{dir}/ort_logits_{model}.npy"))).unwrap();
        assert_eq!(golden.shape, vec![data.len(), m.classes()]);
        let err = z
            .iter()
            .zip(&golden.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err < 1e-4,
            "{dir}/{model}: max |nncert - onnxruntime| = {err}"
        );
        let acc = Accuracy::of(&m.predict(data.x.view()).unwrap(), &data.labels);
        let meta = std::fs::read_to_string(ex(&format!("{dir}/meta.json"))).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
        let want = meta["test_accuracy"][model].as_f64().unwrap();
        assert!(
            (acc.accuracy - want).abs() < 1e-9,
            "{dir}/{model}: {} vs {want}",
            acc.accuracy
        );
    }
}
