//! # nncert-report
//!
//! The assessment frame of nncert: the plan ([`plan`]), the evidence records every engine returns
//! ([`evidence`], with a versioned JSON Schema), the audit trail (hashes, hash chain, Ed25519 signatures:
//! [`audit`]), the acceptance gate and JUnit output ([`gate`]), and the renderers ([`render`]: self-contained
//! HTML with SVG charts, Markdown) with the technical-file content ([`compliance`]).
//!
//! Engines plug in by producing [`evidence::EvidenceRecord`]s; nothing here runs a model.

pub mod audit;
pub mod compliance;
pub mod error;
pub mod evidence;
pub mod gate;
pub mod plan;
pub mod render;
pub mod svg;

pub use error::ReportError;
pub use evidence::{EvidenceFile, EvidenceRecord, Verdict};
pub use plan::Plan;
