//! Framework adapter manifests (`proto/adapters/*.toml`): parsing, validation and the typed
//! model the Rust and Python adapter emitters read. The format is documented in
//! `proto/adapters/README.md`; every error names the file, line, column and field.
//!
//! `model` is what the emitters read, `raw` the file as written; `validation` turns one
//! into the other, with `defaults` converting and checking default values.

mod defaults;
mod model;
mod raw;
mod validation;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use model::{
    Constraints, Literal, Manifest, Operation, OperationKind, Parameter, ResultField, Tool,
    ValueType, dtype_names,
};

use crate::error::{Error, Result};
use raw::RawManifest;
use validation::Validator;

/// Reads every `*.toml` in `dir` (sorted by file name) and validates them together
/// (framework ids and tool names must be unique across files).
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io("reading manifest folder", dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io("reading manifest folder", dir, e))?
            .path();
        if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    load_files(&paths)
}

/// Reads and validates the given manifest files.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<Manifest>> {
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut tools: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        let manifest = parse(path, &text)?;
        if let Some(other) = manifests.iter().find(|m| m.id == manifest.id) {
            return Err(Error::Manifest(format!(
                "{}: framework.id: `{}` is already defined by {}",
                path.display(),
                manifest.id,
                other.path.display()
            )));
        }
        for tool in &manifest.tools {
            if let Some(other) = tools.insert(tool.name.clone(), path.clone()) {
                return Err(Error::Manifest(format!(
                    "{}: tool `{}` is already defined by {}; tool names must be unique across frameworks",
                    path.display(),
                    tool.name,
                    other.display()
                )));
            }
        }
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// Parses and validates one manifest. `path` is used in error messages only.
pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
    let file = SourceFile { path, text };
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        match e.span() {
            Some(span) => file.error(span, "", &message),
            None => Error::Manifest(format!("{}: {message}", path.display())),
        }
    })?;
    Validator { file }.manifest(raw)
}

/// The manifest being read, for errors that point into it.
struct SourceFile<'a> {
    path: &'a Path,
    text: &'a str,
}

impl SourceFile<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn error(&self, span: Range<usize>, field: &str, message: &str) -> Error {
        let (line, column) = self.position(span.start);
        let field = if field.is_empty() {
            String::new()
        } else {
            format!("{field}: ")
        };
        Error::Manifest(format!(
            "{}:{line}:{column}: {field}{message}",
            self.path.display()
        ))
    }
}
