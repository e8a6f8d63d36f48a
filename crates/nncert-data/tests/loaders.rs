//! Round trips and error cases of the dataset loaders.

use nncert_data::{DataError, Layout, Preprocess, Source, load, read_labels};
use npyz::WriterBuilder;
use std::io::Write;
use std::path::Path;

fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], v: &[T]) {
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()
        .unwrap();
    w.extend(v.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(path, buf).unwrap();
}

fn npy_bytes<T: npyz::Serialize + npyz::AutoSerialize + Copy>(shape: &[u64], v: &[T]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.npy");
    write_npy(&p, shape, v);
    std::fs::read(p).unwrap()
}

fn src(p: &Path) -> Source {
    Source::parse(p.to_str().unwrap())
}

#[test]
fn npy_types_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (x32, x64, xu8, yl) = (
        dir.path().join("x32.npy"),
        dir.path().join("x64.npy"),
        dir.path().join("xu8.npy"),
        dir.path().join("y.npy"),
    );
    write_npy(&x32, &[2, 3], &[0.5f32, 1.0, 0.0, 0.25, 0.75, 1.0]);
    write_npy(&x64, &[2, 3], &[0.5f64, 1.0, 0.0, 0.25, 0.75, 1.0]);
    write_npy(&xu8, &[2, 3], &[2u8, 4, 0, 1, 3, 4]);
    write_npy(&yl, &[2], &[1i64, 0]);
    let pre = Preprocess::default();
    let a = load(&src(&x32), Some(&src(&yl)), &pre, None).unwrap();
    let b = load(&src(&x64), Some(&src(&yl)), &pre, None).unwrap();
    let scaled = Preprocess {
        scale: Some(0.25),
        range: Some((0.0, 1.0)),
        ..Preprocess::default()
    };
    let c = load(&src(&xu8), Some(&src(&yl)), &scaled, None).unwrap();
    assert_eq!(a.x, b.x);
    assert_eq!(a.x, c.x);
    assert_eq!(a.labels, vec![1, 0]);
    assert_eq!(a.shape, vec![3]);
    assert_eq!(c.lower, vec![0.0; 3]);
    assert_eq!(c.upper, vec![1.0; 3]);
    assert!(a.lower.iter().all(|v| *v == f32::NEG_INFINITY));
}

#[test]
fn normalization_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    // One 1x2 image with 2 channels, NHWC: pixel 0 = (0, 1), pixel 1 = (1, 0).
    write_npy(&x, &[1, 1, 2, 2], &[0.0f32, 1.0, 1.0, 0.0]);
    write_npy(&y, &[1], &[3u8]);
    let pre = Preprocess {
        layout: Layout::Nhwc,
        mean: vec![0.5, 0.25],
        std: vec![0.5, 0.25],
        range: Some((0.0, 1.0)),
        ..Preprocess::default()
    };
    let d = load(&src(&x), Some(&src(&y)), &pre, Some(&[2, 1, 2])).unwrap();
    assert_eq!(d.shape, vec![2, 1, 2]);
    // Channel 0 plane = [0, 1] -> [-1, 1]; channel 1 plane = [1, 0] -> [3, -1].
    assert_eq!(d.x.row(0).to_vec(), vec![-1.0, 1.0, 3.0, -1.0]);
    assert_eq!(d.lower, vec![-1.0, -1.0, -1.0, -1.0]);
    assert_eq!(d.upper, vec![1.0, 1.0, 3.0, 3.0]);
    assert_eq!(d.labels, vec![3]);
}

#[test]
fn npz_stored_and_compressed() {
    let dir = tempfile::tempdir().unwrap();
    for method in [
        zip::CompressionMethod::Stored,
        zip::CompressionMethod::Deflated,
    ] {
        let p = dir.path().join(format!("d{method:?}.npz"));
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file("x.npy", opts).unwrap();
        z.write_all(&npy_bytes(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0]))
            .unwrap();
        z.start_file("y.npy", opts).unwrap();
        z.write_all(&npy_bytes(&[2], &[0i64, 1])).unwrap();
        z.finish().unwrap();
        let s = p.to_str().unwrap();
        let d = load(
            &Source::parse(s),
            Some(&Source::parse(&format!("{s}:y"))),
            &Preprocess::default(),
            None,
        )
        .unwrap();
        assert_eq!(d.x.row(1).to_vec(), vec![3.0, 4.0]);
        assert_eq!(d.labels, vec![0, 1]);
        let err = read_labels(&Source::parse(&format!("{s}:nope"))).unwrap_err();
        assert!(err.to_string().contains("no array named 'nope'"), "{err}");
    }
}

#[test]
fn csv_with_and_without_header() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    std::fs::write(&a, "f1,f2,label\n0.5,1.5,2\n-1,2,0\n").unwrap();
    std::fs::write(&b, "2,0.5,1.5\n0,-1,2\n").unwrap();
    let pre = Preprocess::default();
    let da = load(&src(&a), None, &pre, None).unwrap();
    let first = Preprocess {
        label_column: 0,
        ..Preprocess::default()
    };
    let db = load(&src(&b), None, &first, None).unwrap();
    assert_eq!(da.x, db.x);
    assert_eq!(da.labels, vec![2, 0]);
    assert_eq!(db.labels, vec![2, 0]);

    std::fs::write(&a, "0.5,1.5,2\n-1,2\n").unwrap();
    let err = load(&src(&a), None, &pre, None).unwrap_err();
    assert!(err.to_string().contains("line 2: 2 columns"), "{err}");
    std::fs::write(&a, "0.5,1.5,2\n-1,2,0.5\n").unwrap();
    let err = load(&src(&a), None, &pre, None).unwrap_err();
    assert!(matches!(err, DataError::Label { .. }), "{err}");
    assert!(err.to_string().contains("a.csv"), "{err}");
}

#[test]
fn png_folder() {
    let dir = tempfile::tempdir().unwrap();
    for (class, value) in [("cat", 0u8), ("dog", 255u8)] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for k in 0..2u8 {
            let img = image::GrayImage::from_pixel(3, 2, image::Luma([value / (k + 1)]));
            img.save(dir.path().join(class).join(format!("{k}.png")))
                .unwrap();
        }
    }
    let pre = Preprocess {
        range: Some((0.0, 1.0)),
        ..Preprocess::default()
    };
    let d = load(&src(dir.path()), None, &pre, Some(&[1, 2, 3])).unwrap();
    assert_eq!(d.labels, vec![0, 0, 1, 1]);
    assert_eq!(d.shape, vec![1, 2, 3]);
    assert_eq!(d.x[[2, 0]], 1.0);
    assert!((d.x[[3, 5]] - 127.0 / 255.0).abs() < 1e-6);
    // A different size is an error naming the image.
    image::GrayImage::new(4, 4)
        .save(dir.path().join("dog").join("odd.png"))
        .unwrap();
    let err = load(&src(dir.path()), None, &pre, None).unwrap_err();
    assert!(err.to_string().contains("odd.png"), "{err}");
}

#[test]
fn mismatches_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y, yf, x3) = (
        dir.path().join("x.npy"),
        dir.path().join("y.npy"),
        dir.path().join("yf.npy"),
        dir.path().join("x3.npy"),
    );
    write_npy(&x, &[2, 2], &[0.0f32, 1.0, 2.0, 3.0]);
    write_npy(&y, &[3], &[0i64, 1, 1]);
    write_npy(&yf, &[2], &[0.5f32, 1.0]);
    write_npy(&x3, &[2, 3], &[0.0f32; 6]);
    let pre = Preprocess::default();
    let err = load(&src(&x), Some(&src(&y)), &pre, None).unwrap_err();
    assert!(err.to_string().contains("3 labels for 2 samples"), "{err}");
    assert!(err.to_string().contains("y.npy"), "{err}");
    let err = load(&src(&x), Some(&src(&yf)), &pre, None).unwrap_err();
    assert!(err.to_string().contains("not a class index"), "{err}");
    let y2 = dir.path().join("y2.npy");
    write_npy(&y2, &[2], &[0i64, 1]);
    let err = load(&src(&x3), Some(&src(&y2)), &pre, Some(&[4])).unwrap_err();
    assert!(err.to_string().contains("model takes 4"), "{err}");
    // Out of the declared range: refuse rather than clip silently.
    let unit = Preprocess {
        range: Some((0.0, 1.0)),
        ..Preprocess::default()
    };
    let err = load(&src(&x), Some(&src(&y2)), &unit, None).unwrap_err();
    assert!(
        err.to_string().contains("outside the declared input range"),
        "{err}"
    );
    let d = load(&src(&x), Some(&src(&y2)), &pre, None).unwrap();
    let err = d.check_model(2, 1).unwrap_err();
    assert!(err.to_string().contains("label 1 of sample 1"), "{err}");
    let err = load(&src(&dir.path().join("missing.npy")), None, &pre, None).unwrap_err();
    assert!(err.to_string().contains("missing.npy"), "{err}");
    std::fs::write(&x, b"not numpy").unwrap();
    let err = load(&src(&x), Some(&src(&y2)), &pre, None).unwrap_err();
    assert!(err.to_string().contains("not a valid .npy"), "{err}");
}
