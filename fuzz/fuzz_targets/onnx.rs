//! Fuzzes the ONNX importer: arbitrary bytes must load or fail with an error, never panic; whatever loads must
//! canonicalize.
//!   cargo +nightly fuzz run onnx
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = nncert_model::onnx::load_bytes(data, Path::new("fuzz.onnx")) {
        let _ = nncert_model::canon::canonicalize(g);
    }
    let _ = nncert_model::onnx::inspect_bytes(data, Path::new("fuzz.onnx"));
});
