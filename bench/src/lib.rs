//! Reading VNN-COMP suites: `instances.csv` and `truth.csv` of one suite folder.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::Path;

/// One instance of a suite, with its expected answer (`sat`, `unsat`, `unknown`, or `?` without truth).
#[derive(Clone, Debug)]
pub struct Instance {
    pub id: String,
    pub onnx: String,
    pub vnnlib: String,
    pub timeout: f64,
    pub expected: String,
}

/// The rows of a simple CSV file (no quoting) as header → value maps.
pub fn read_csv(path: &Path) -> Result<Vec<HashMap<String, String>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty csv")?.split(',').collect();
    Ok(lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split(','))
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect())
}

/// The instances of the suite folder `dir`, in file order.
pub fn read_suite(dir: &Path) -> Result<Vec<Instance>> {
    let truth: HashMap<String, String> = read_csv(&dir.join("truth.csv"))?
        .into_iter()
        .filter_map(|r| Some((r.get("instance_id")?.clone(), r.get("expected")?.clone())))
        .collect();
    read_csv(&dir.join("instances.csv"))?
        .into_iter()
        .map(|inst| {
            let (Some(id), Some(onnx), Some(vnnlib), Some(timeout)) = (
                inst.get("instance_id"),
                inst.get("onnx"),
                inst.get("vnnlib"),
                inst.get("timeout"),
            ) else {
                bail!("{}/instances.csv: missing columns", dir.display());
            };
            Ok(Instance {
                id: id.clone(),
                onnx: onnx.clone(),
                vnnlib: vnnlib.clone(),
                timeout: timeout.parse().context("timeout")?,
                expected: truth.get(id).cloned().unwrap_or_else(|| "?".into()),
            })
        })
        .collect()
}
