//! Corruptions: range, determinism, severity ordering, tabular imputation, the accuracy table.

use ndarray::Array2;
use nncert_data::Dataset;
use nncert_empirical::Model;
use nncert_empirical::corrupt::{self, Corruption, IMAGE, TABULAR};
use nncert_model::ir::{GraphBuilder, Linear, Op};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn images(n: usize) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = Array2::from_shape_fn((n, 2 * 8 * 8), |_| rng.random_range(0.0f32..=1.0));
    Dataset {
        x,
        labels: vec![0; n],
        shape: vec![2, 8, 8],
        lower: vec![0.0; 128],
        upper: vec![1.0; 128],
        origin: "test".into(),
    }
}

fn dist(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn image_corruptions_are_valid_deterministic_and_graded() {
    let d = images(6);
    for c in IMAGE {
        let a = corrupt::apply(&d, c, 3, 7).unwrap();
        let b = corrupt::apply(&d, c, 3, 7).unwrap();
        assert_eq!(a, b, "{c:?} is not deterministic");
        assert!(
            a.iter().all(|v| (0.0..=1.0).contains(v)),
            "{c:?} leaves the range"
        );
        let mild = dist(&corrupt::apply(&d, c, 1, 7).unwrap(), &d.x);
        let severe = dist(&corrupt::apply(&d, c, 5, 7).unwrap(), &d.x);
        assert!(mild > 0.0, "{c:?} changes nothing");
        assert!(
            severe > mild,
            "{c:?}: severity 5 ({severe}) not stronger than 1 ({mild})"
        );
    }
    let err = corrupt::apply(&d, Corruption::Jpeg, 6, 0).unwrap_err();
    assert!(err.to_string().contains("severity"), "{err}");
    let mut unbounded = d.clone();
    unbounded.upper = vec![f32::INFINITY; 128];
    let err = corrupt::apply(&unbounded, Corruption::Contrast, 1, 0).unwrap_err();
    assert!(
        err.to_string().contains("finite valid input range"),
        "{err}"
    );
}

#[test]
fn jpeg_keeps_a_flat_image_and_contrast_keeps_the_mean() {
    let mut d = images(1);
    d.x.fill(0.5);
    let j = corrupt::apply(&d, Corruption::Jpeg, 5, 0).unwrap();
    assert!(
        j.iter().all(|v| (v - 0.5).abs() < 0.02),
        "flat blocks survive quantization"
    );
    let d = images(1);
    let c = corrupt::apply(&d, Corruption::Contrast, 2, 0).unwrap();
    let plane_mean = |a: &Array2<f32>| a.iter().take(64).map(|v| *v as f64).sum::<f64>() / 64.0;
    assert!((plane_mean(&c) - plane_mean(&d.x)).abs() < 1e-5);
}

#[test]
fn tabular_corruptions_and_the_table() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let n = 200;
    let x = Array2::from_shape_fn((n, 3), |_| rng.random_range(-2.0f32..2.0));
    // Label: sign of the first feature, and the model reads exactly that.
    let labels: Vec<usize> = x.column(0).iter().map(|v| usize::from(*v > 0.0)).collect();
    let data = Dataset {
        x,
        labels,
        shape: vec![3],
        lower: vec![f32::NEG_INFINITY; 3],
        upper: vec![f32::INFINITY; 3],
        origin: "test".into(),
    };
    let miss = corrupt::apply(&data, Corruption::MissingValues, 5, 3).unwrap();
    let mean0 = data.x.column(0).mean().unwrap();
    let replaced = miss.iter().zip(&data.x).filter(|(a, b)| a != b).count();
    assert!(
        (200..400).contains(&replaced),
        "about half of 600 values imputed, got {replaced}"
    );
    assert!(
        miss.column(0)
            .iter()
            .zip(data.x.column(0))
            .all(|(a, b)| a == b || (a - mean0).abs() < 1e-6)
    );

    let mut b = GraphBuilder::new("x", vec![3]);
    let w = ndarray::arr2(&[[-1.0f32, 0.0, 0.0], [1.0, 0.0, 0.0]]);
    let h = b
        .push(
            "fc",
            Op::Linear(Linear {
                weight: w,
                bias: None,
            }),
            vec![b.input_id()],
            None,
        )
        .unwrap();
    let g = b.finish(h);
    let model = Model::new(&g).unwrap();
    let rep = corrupt::evaluate(&model, &data, &TABULAR, 0, &|_| {}).unwrap();
    assert_eq!(rep.clean.correct, n);
    assert_eq!(rep.rows.len(), 10);
    let noise: Vec<f64> = rep
        .rows
        .iter()
        .take(5)
        .map(|r| r.accuracy.accuracy)
        .collect();
    assert!(noise[4] < noise[0], "stronger noise must hurt: {noise:?}");
    assert!(rep.mean_corruption_error > 0.0 && rep.mean_corruption_error < 0.5);
    for r in &rep.rows {
        assert!((r.drop.absolute - (1.0 - r.accuracy.accuracy)).abs() < 1e-12);
    }
}
