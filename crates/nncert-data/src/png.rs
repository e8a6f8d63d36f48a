//! Folders of PNG images: one sub-folder per class (classes numbered in name order), every image the same size.

use crate::{DataError, RawArray};
use std::path::{Path, PathBuf};

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        v.push(e.path());
    }
    v.sort();
    Ok(v)
}

/// Reads `root/<class>/*.png` as `[N, H, W, C]` raw 0..255 values (C = 1 when every image is grayscale, else 3).
pub fn read_folder(root: &Path) -> Result<(RawArray, Vec<usize>), DataError> {
    let classes: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if classes.is_empty() {
        return Err(DataError::Format {
            path: root.to_path_buf(),
            message: "no class sub-folders (expect one folder of PNG images per class)".into(),
        });
    }
    let mut images = Vec::new();
    for (label, dir) in classes.iter().enumerate() {
        for p in sorted_entries(dir)? {
            let is_png = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if is_png {
                let img = image::open(&p).map_err(|e| DataError::Format {
                    path: p.clone(),
                    message: format!("cannot decode PNG ({e})"),
                })?;
                images.push((p, img, label));
            }
        }
    }
    let Some((first, img0, _)) = images.first() else {
        return Err(DataError::Format {
            path: root.to_path_buf(),
            message: "no .png files in the class folders".into(),
        });
    };
    let (w, h) = (img0.width(), img0.height());
    let first = first.clone();
    let gray = images.iter().all(|(_, i, _)| !i.color().has_color());
    let c = if gray { 1 } else { 3 };
    let mut values = Vec::with_capacity(images.len() * (w * h) as usize * c);
    let mut labels = Vec::with_capacity(images.len());
    for (p, img, label) in &images {
        if (img.width(), img.height()) != (w, h) {
            return Err(DataError::Shape {
                path: p.clone(),
                message: format!(
                    "image is {}x{} but {} is {w}x{h}; every image must have the same size",
                    img.width(),
                    img.height(),
                    first.display()
                ),
            });
        }
        if gray {
            values.extend(img.to_luma8().into_raw().into_iter().map(f32::from));
        } else {
            values.extend(img.to_rgb8().into_raw().into_iter().map(f32::from));
        }
        labels.push(*label);
    }
    Ok((
        RawArray {
            shape: vec![images.len(), h as usize, w as usize, c],
            values,
        },
        labels,
    ))
}
