//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading or building a [`Property`](crate::Property).
///
/// Errors located in a VNN-LIB file display as `FILE:LINE:COL: message`, where the message says
/// what was expected and what was found; lines and columns start at 1 and columns count characters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A syntax or semantic error at a place in a VNN-LIB file.
    #[error("{origin}:{line}:{col}: {message}")]
    Parse {
        /// The file name (or other origin) given to the parser.
        origin: String,
        /// 1-based line.
        line: u32,
        /// 1-based column, in characters.
        col: u32,
        /// What was expected and what was found.
        message: String,
    },
    /// The file is well-formed but describes no usable property, for a reason that has no single
    /// place in the file (gaps in the declarations, an input without bounds, a size limit).
    #[error("{origin}: {message}")]
    Property {
        /// The file name (or other origin) given to the parser.
        origin: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read VNN-LIB file `{}`: {source}", path.display())]
    Io {
        /// The path that was opened.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The property and the model disagree on the number of inputs or outputs.
    #[error(
        "dimension mismatch: the property has {property} {what} but the model has {model}; \
         use the VNN-LIB file written for this model (or check the model's input/output shapes)"
    )]
    DimensionMismatch {
        /// `"inputs"` or `"outputs"`.
        what: &'static str,
        /// The count in the property.
        property: usize,
        /// The count in the model.
        model: usize,
    },
    /// A builder such as [`Property::robustness_linf`](crate::Property::robustness_linf) was given
    /// arguments that describe no valid property.
    #[error("invalid property arguments: {0}")]
    InvalidArgument(String),
}
