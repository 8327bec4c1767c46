//! mlbridge-codegen: typed Rust and Python SDKs from `.proto` files, without `protoc`.
//!
//! The generator parses with [protox](https://docs.rs/protox) and produces every file in
//! memory ([`Builder::generate`]); writing them is a thin layer on top
//! ([`Generated::write`], [`Builder::compile`]). Three front ends share it:
//!
//! * `build.rs`:
//!   ```no_run
//!   mlbridge_codegen::configure()
//!       .include("proto")
//!       .compile(&["proto/ml_bridge.proto"])
//!       .expect("generate mlbridge code");
//!   ```
//!   writes Rust code to `OUT_DIR` (use `tonic::include_proto!("mlbridge.v1")`) and prints
//!   `cargo:rerun-if-changed` for every input.
//! * `cargo xtask codegen [--check]` regenerates the checked-in `generated/` tree.
//! * the `mlbridge-codegen` CLI takes protoc-like flags (`-I`, `--python-out`, ...).
//!
//! Output is deterministic: the same inputs give the same bytes.

mod adapters;
mod comments;
mod editions;
mod error;
mod facts;
mod load;
pub mod manifest;
mod names;
pub mod output;
mod python;
mod rust;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use adapters::DEFAULT_PYTHON_PACKAGE as DEFAULT_ADAPTERS_PACKAGE;
pub use error::{Error, Result};
pub use names::{is_python_keyword, is_rust_keyword, python_identifier, rust_identifier};
pub use output::Mode;
pub use python::ProtobufVersion;

/// Starts a [`Builder`] with the defaults: Rust output on, Python output off.
pub fn configure() -> Builder {
    Builder::default()
}

/// Generates Rust code for `protos` found under `includes` into `OUT_DIR`: the one-line
/// `build.rs` case.
pub fn compile_protos(protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<()> {
    let mut builder = configure();
    for include in includes {
        builder = builder.include(include.as_ref());
    }
    builder.compile(protos)
}

/// Settings for one generation run, as chained setters.
#[derive(Debug, Clone)]
pub struct Builder {
    includes: Vec<PathBuf>,
    rust: bool,
    rust_settings: rust::RustSettings,
    rust_out: Option<PathBuf>,
    python: bool,
    python_settings: python::PythonSettings,
    python_out: Option<PathBuf>,
    manifests: Option<PathBuf>,
    adapters_package: String,
    emit_rerun_if_changed: Option<bool>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            includes: Vec::new(),
            rust: true,
            rust_settings: rust::RustSettings::default(),
            rust_out: None,
            python: false,
            python_settings: python::PythonSettings::default(),
            python_out: None,
            manifests: None,
            adapters_package: DEFAULT_ADAPTERS_PACKAGE.to_owned(),
            emit_rerun_if_changed: None,
        }
    }
}

impl Builder {
    /// Adds a folder to the import search path (protoc's `-I`). Well-known types
    /// (`google/protobuf/*.proto`) are always available.
    pub fn include(mut self, dir: impl Into<PathBuf>) -> Self {
        self.includes.push(dir.into());
        self
    }

    /// Whether to generate Rust code (default: on).
    pub fn rust(mut self, enable: bool) -> Self {
        self.rust = enable;
        self
    }

    /// Where [`Builder::compile`] writes Rust code (default: `OUT_DIR`).
    pub fn rust_out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.rust_out = Some(dir.into());
        self
    }

    /// Also emit a file named `name` holding the module tree, which `include!`s each
    /// package's file.
    pub fn rust_include_file(mut self, name: impl Into<String>) -> Self {
        self.rust_settings.include_file = Some(name.into());
        self
    }

    /// Also emit a file named `name` that defines `pub const FILE_DESCRIPTOR_SET: &[u8]`: the
    /// encoded `google.protobuf.FileDescriptorSet` of every parsed file (imports first, with
    /// source info), e.g. for gRPC server reflection. The include file, when there is one,
    /// `include!`s it at the crate's root.
    pub fn rust_descriptor_set_file(mut self, name: impl Into<String>) -> Self {
        self.rust_settings.descriptor_set_file = Some(name.into());
        self
    }

    /// Give server trait methods default bodies that answer `UNIMPLEMENTED` (default: off),
    /// so that a server can implement a large service a piece at a time.
    pub fn server_default_stubs(mut self, enable: bool) -> Self {
        self.rust_settings.server_default_stubs = enable;
        self
    }

    /// Whether to generate Python code (default: off; [`Builder::python_out`] turns it on).
    pub fn python(mut self, enable: bool) -> Self {
        self.python = enable;
        self
    }

    /// Where [`Builder::compile`] writes Python code; turns Python output on.
    pub fn python_out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.python = true;
        self.python_out = Some(dir.into());
        self
    }

    /// Places Python modules inside package `name` (e.g. `acme.protos`), with imports
    /// that resolve there. Without it, the layout is protoc's.
    pub fn python_package(mut self, name: impl Into<String>) -> Self {
        self.python_settings.package = Some(name.into());
        self
    }

    /// The protobuf runtime version that `_pb2.py` files require (default
    /// [`ProtobufVersion::DEFAULT`]).
    pub fn protobuf_version(mut self, version: ProtobufVersion) -> Self {
        self.python_settings.protobuf_version = version;
        self
    }

    /// The grpcio version that `_pb2_grpc.py` files require (default
    /// [`ProtobufVersion::GRPC_DEFAULT`]): they raise at import under an older grpcio, as
    /// grpcio-tools' output does.
    pub fn grpc_version(mut self, version: ProtobufVersion) -> Self {
        self.python_settings.grpc_version = version;
        self
    }

    /// A folder of framework adapter manifests (`*.toml`, format in
    /// `proto/adapters/README.md`). Rust output then includes `mlbridge_adapters.rs` (typed
    /// clients, one module per framework; they use the `mlbridge` runtime crate) and Python
    /// output the adapter package (see [`Builder::adapters_package`]).
    pub fn manifests(mut self, dir: impl Into<PathBuf>) -> Self {
        self.manifests = Some(dir.into());
        self
    }

    /// The Python package of the code generated from manifests (default
    /// `mlbridge_adapters`, which workers load by default).
    pub fn adapters_package(mut self, name: impl Into<String>) -> Self {
        self.adapters_package = name.into();
        self
    }

    /// Whether [`Builder::compile`] prints `cargo:rerun-if-changed` lines (default: when
    /// writing to `OUT_DIR`, i.e. from a build script).
    pub fn emit_rerun_if_changed(mut self, enable: bool) -> Self {
        self.emit_rerun_if_changed = Some(enable);
        self
    }

    /// Generates every file in memory. Nothing is written.
    pub fn generate(&self, protos: &[impl AsRef<Path>]) -> Result<Generated> {
        let protos: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_owned()).collect();
        if protos.is_empty() && self.manifests.is_none() {
            return Err(Error::setting(
                "protos",
                "nothing to generate: give at least one .proto file or a manifests folder",
            ));
        }
        let mut rust = BTreeMap::new();
        let mut python = BTreeMap::new();
        let mut inputs = Vec::new();
        if !protos.is_empty() {
            let set = load::ProtoSet::load(&self.includes, &protos)?;
            if self.rust {
                rust = rust::generate(&set, &self.rust_settings)?;
            }
            if self.python {
                python = python::generate(&set, &self.python_settings)?;
            }
            inputs.extend(set.sources().iter().cloned());
        }
        if let Some(dir) = &self.manifests {
            python::check_package_name("adapters_package", &self.adapters_package)?;
            let manifests = manifest::load_dir(dir)?;
            if manifests.is_empty() {
                return Err(Error::setting(
                    "manifests",
                    format!("no `*.toml` manifests in `{}`", dir.display()),
                ));
            }
            if self.rust {
                insert_unique(
                    &mut rust,
                    adapters::rust::FILE_NAME.to_owned(),
                    adapters::rust::generate(&manifests)?,
                )?;
            }
            if self.python {
                for (path, contents) in adapters::python(&manifests, &self.adapters_package)? {
                    insert_unique(&mut python, path, contents)?;
                }
            }
            inputs.push(dir.clone());
            inputs.extend(manifests.into_iter().map(|m| m.path));
        }
        for path in rust.keys().chain(python.keys()) {
            output::safe_relative_path(path)?;
        }
        Ok(Generated {
            rust,
            python,
            inputs,
        })
    }

    /// Generates and writes: Rust code to [`Builder::rust_out`] or `OUT_DIR`, Python code to
    /// [`Builder::python_out`]. Nothing is written if generation fails.
    pub fn compile(&self, protos: &[impl AsRef<Path>]) -> Result<()> {
        let generated = self.generate(protos)?;
        let rust_out = match (&self.rust_out, self.rust) {
            (Some(dir), _) => Some(dir.clone()),
            (None, true) => Some(std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or_else(
                || {
                    Error::setting(
                        "rust_out",
                        "no output folder: set rust_out or run from a build script (OUT_DIR)",
                    )
                },
            )?),
            (None, false) => None,
        };
        if self.python && self.python_out.is_none() {
            return Err(Error::setting(
                "python_out",
                "Python output is on but no python_out folder is set",
            ));
        }
        if let Some(dir) = &rust_out {
            output::sync_dir(dir, &generated.rust, Mode::Write, false)?;
        }
        if let Some(dir) = &self.python_out {
            output::sync_dir(dir, &generated.python, Mode::Write, false)?;
        }
        if self
            .emit_rerun_if_changed
            .unwrap_or(self.rust_out.is_none() && self.rust)
        {
            for input in &generated.inputs {
                println!("cargo:rerun-if-changed={}", input.display());
            }
        }
        Ok(())
    }
}

fn insert_unique(
    files: &mut BTreeMap<String, String>,
    path: String,
    contents: String,
) -> Result<()> {
    if files.contains_key(&path) {
        return Err(Error::DuplicateOutput { path });
    }
    files.insert(path, contents);
    Ok(())
}

/// The output of one run: relative path → contents, per language.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    /// Rust files, one per protobuf package (plus the include file when asked for).
    pub rust: BTreeMap<String, String>,
    /// Python files: `_pb2.py`, `_pb2.pyi`, and for files with services `_pb2_grpc.py(i)`.
    pub python: BTreeMap<String, String>,
    /// The `.proto` files read from disk.
    pub inputs: Vec<PathBuf>,
}
