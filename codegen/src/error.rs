//! The generator's error type: every failure names the file, field or setting at fault.

use std::path::PathBuf;

/// Result alias used throughout the generator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while generating code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `.proto` input could not be parsed or resolved (syntax errors, missing imports,
    /// duplicate names, unknown types). The message starts with `file:line:column` when the
    /// position is known.
    #[error("{0}")]
    Proto(String),
    /// A setting of the [`Builder`](crate::Builder) or a CLI flag is invalid.
    #[error("invalid setting `{setting}`: {reason}")]
    Setting {
        /// The setting at fault, e.g. `python_package`.
        setting: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
    /// An adapter manifest is invalid. The message starts with `file:line:column: field:`
    /// when the position is known.
    #[error("{0}")]
    Manifest(String),
    /// An output path would be written outside the output folder.
    #[error("output path `{path}` would escape the output folder")]
    UnsafeOutputPath {
        /// The offending path, as it was computed.
        path: String,
    },
    /// Two inputs would write the same output file.
    #[error("two inputs generate the same output file `{path}`")]
    DuplicateOutput {
        /// The output path generated twice.
        path: String,
    },
    /// Generating Rust code with prost/tonic failed.
    #[error("rust code generation failed: {0}")]
    Rust(String),
    /// A template failed to render.
    #[error("rendering template `{template}` failed: {source}")]
    Template {
        /// The template's name.
        template: &'static str,
        /// The underlying askama error.
        #[source]
        source: askama::Error,
    },
    /// Reading or writing a file failed.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done, e.g. `writing`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `--check` found files that differ from what the generator produces.
    #[error("{} generated file(s) are stale:\n{}", .stale.len(), .stale.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n"))]
    Stale {
        /// The stale (changed, missing or extra) files.
        stale: Vec<PathBuf>,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn setting(setting: &'static str, reason: impl Into<String>) -> Self {
        Error::Setting {
            setting,
            reason: reason.into(),
        }
    }
}
