//! CSV datasets: numeric feature columns and one integer label column, with or without a header row.

use crate::{DataError, RawArray};
use std::path::Path;

/// Reads a CSV file: every column but `label_column` (negative: from the end) is a feature. The first row is a
/// header when any of its fields is not a number.
pub fn read_csv(path: &Path, label_column: isize) -> Result<(RawArray, Vec<usize>), DataError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            message: format!("cannot open CSV ({e})"),
        })?;
    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut width: Option<usize> = None;
    for (row, rec) in rdr.records().enumerate() {
        let line = row + 1;
        let rec = rec.map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            message: format!("line {line}: {e}"),
        })?;
        if row == 0 && rec.iter().any(|f| f.parse::<f64>().is_err()) {
            continue; // header
        }
        let w = rec.len();
        if w < 2 {
            return Err(DataError::Shape {
                path: path.to_path_buf(),
                message: format!(
                    "line {line}: {w} column(s); need at least one feature and a label"
                ),
            });
        }
        match width {
            None => width = Some(w),
            Some(k) if k != w => {
                return Err(DataError::Shape {
                    path: path.to_path_buf(),
                    message: format!("line {line}: {w} columns, earlier rows have {k}"),
                });
            }
            _ => {}
        }
        let lc = if label_column < 0 {
            w as isize + label_column
        } else {
            label_column
        };
        if lc < 0 || lc as usize >= w {
            return Err(DataError::Label {
                path: path.to_path_buf(),
                message: format!(
                    "label column {label_column} does not exist in a row of {w} columns"
                ),
            });
        }
        for (j, field) in rec.iter().enumerate() {
            let v: f64 = field.parse().map_err(|_| DataError::Format {
                path: path.to_path_buf(),
                message: format!("line {line}, column {}: '{field}' is not a number", j + 1),
            })?;
            if j == lc as usize {
                if !(v >= 0.0 && v.fract() == 0.0 && v < 1e9) {
                    return Err(DataError::Label {
                        path: path.to_path_buf(),
                        message: format!(
                            "line {line}, column {}: label '{field}' is not a class index (a non-negative integer)",
                            j + 1
                        ),
                    });
                }
                labels.push(v as usize);
            } else if !v.is_finite() {
                return Err(DataError::Format {
                    path: path.to_path_buf(),
                    message: format!("line {line}, column {}: '{field}' is not finite", j + 1),
                });
            } else {
                values.push(v as f32);
            }
        }
    }
    let n = labels.len();
    let features = width.map_or(0, |w| w - 1);
    Ok((
        RawArray {
            shape: vec![n, features],
            values,
        },
        labels,
    ))
}
