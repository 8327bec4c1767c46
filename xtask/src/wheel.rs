//! `cargo xtask wheel [--release|--debug] [--out DIR]`: a platform wheel that carries the
//! Python SDK, the generated Python packages it imports and the engine binary, so that a
//! Python user needs no cargo (`pip install mlbridge-*.whl`, then `mlbridge.Engine.start()`).
//!
//! The wheel is written here with the `zip` crate rather than by maturin: a wheel is a zip
//! with `METADATA`, `WHEEL` and a `RECORD` of SHA-256 digests, and what goes in comes from
//! two Python source folders plus one binary cargo has already built. maturin's `bin`
//! bindings take a single Python source folder, would rebuild the engine with a profile of
//! their own, and would put the binary in `scripts` where `Engine.start` finds it only when
//! the environment's `bin` is on `PATH`; here it goes to `mlbridge/bin/mlbridge`, where the
//! SDK looks (`mlbridge.engine.PACKAGED_ENGINE`), and nothing is fetched from PyPI to build.
//!
//! The package's name, version, summary and dependencies come from
//! `runtime/python/pyproject.toml` and `generated/python/pyproject.toml` (the
//! `mlbridge-proto` dependency is dropped: the wheel carries that package itself).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::run;

const USAGE: &str = "usage: cargo xtask wheel [--release|--debug] [--out DIR]
  --release   build the engine with the release profile (the default)
  --debug     build it with the dev profile (faster to build, larger)
  --out DIR   where to write the wheel [default: target/wheels]";

/// Python packages the wheel carries: (source folder, package name), relative to the root.
const PACKAGES: &[(&str, &str)] = &[
    ("runtime/python/mlbridge", "mlbridge"),
    ("generated/python/mlbridge_proto", "mlbridge_proto"),
    ("generated/python/mlbridge_adapters", "mlbridge_adapters"),
];

/// Where the engine binary goes inside the wheel (`mlbridge.engine.PACKAGED_ENGINE`).
const ENGINE_IN_WHEEL: &str = "mlbridge/bin/";

/// The profile the engine is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    Release,
    Debug,
}

/// `cargo xtask wheel ARGS`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut profile = Profile::Release;
    let mut out = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--release" => profile = Profile::Release,
            "--debug" => profile = Profile::Debug,
            "--out" => match args.next() {
                Some(dir) => out = Some(PathBuf::from(dir)),
                None => bail!("--out needs a folder\n\n{USAGE}"),
            },
            other => bail!("unexpected argument `{other}` to wheel\n\n{USAGE}"),
        }
    }
    let out = out.unwrap_or_else(|| target_dir().join("wheels"));
    let wheel = build(profile, &out)?;
    println!("{}", wheel.display());
    Ok(())
}

/// The cargo target folder.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| crate::root().join("target"), Into::into)
}

/// Builds the engine with `profile` and writes the wheel into `out`; returns its path.
pub(crate) fn build(profile: Profile, out: &Path) -> Result<PathBuf> {
    crate::step(&format!("building the engine for the wheel ({profile:?})"));
    let mut args = vec!["build", "--locked", "-p", "mlbridge", "--bin", "mlbridge"];
    if profile == Profile::Release {
        args.push("--release");
    }
    run::status(&mut run::cmd(run::cargo(), &args, &crate::root()))?;
    package(profile, out)
}

/// Writes the wheel into `out` around the engine already built with `profile` (`cargo
/// xtask test` has just built it with the whole workspace: building `-p mlbridge` alone
/// would unify features differently and compile most dependencies a second time).
pub(crate) fn package(profile: Profile, out: &Path) -> Result<PathBuf> {
    let root = crate::root();
    let exe = format!("mlbridge{}", std::env::consts::EXE_SUFFIX);
    let engine = target_dir()
        .join(match profile {
            Profile::Release => "release",
            Profile::Debug => "debug",
        })
        .join(&exe);

    let meta = Metadata::read(&root)?;
    let tag = format!("py3-none-{}", platform_tag()?);
    let dist_info = format!("{}-{}.dist-info", meta.name, meta.version);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(format!("{}-{}-{tag}.whl", meta.name, meta.version));
    crate::step(&format!("writing {}", path.display()));

    let mut wheel = Wheel::create(&path)?;
    for (folder, package) in PACKAGES {
        let folder = root.join(folder);
        for file in python_files(&folder)? {
            let relative = file.strip_prefix(&folder).expect("found under the folder");
            let name = format!("{package}/{}", zip_path(relative));
            wheel.add_file(&name, &file, 0o644)?;
        }
    }
    wheel
        .add_file(&format!("{ENGINE_IN_WHEEL}{exe}"), &engine, 0o755)
        .with_context(|| format!("adding the engine {}", engine.display()))?;
    wheel.add_bytes(&format!("{dist_info}/METADATA"), meta.render().as_bytes())?;
    let wheel_file = format!(
        "Wheel-Version: 1.0\nGenerator: mlbridge-xtask {}\nRoot-Is-Purelib: false\nTag: {tag}\n",
        env!("CARGO_PKG_VERSION")
    );
    wheel.add_bytes(&format!("{dist_info}/WHEEL"), wheel_file.as_bytes())?;
    let top_level: String = PACKAGES.iter().map(|(_, p)| format!("{p}\n")).collect();
    wheel.add_bytes(&format!("{dist_info}/top_level.txt"), top_level.as_bytes())?;
    wheel.finish(&format!("{dist_info}/RECORD"))?;
    Ok(path)
}

/// The wheel's platform tag for the host cargo builds for, as `sysconfig.get_platform()`
/// spells it. (A Linux wheel is tagged `linux_*`, installable here; publishing to PyPI would
/// need a manylinux tag checked by auditwheel.)
fn platform_tag() -> Result<String> {
    use std::env::consts::{ARCH, OS};
    Ok(match (OS, ARCH) {
        ("linux", arch) => format!("linux_{arch}"),
        ("macos", "aarch64") => "macosx_11_0_arm64".to_owned(),
        ("macos", "x86_64") => "macosx_10_12_x86_64".to_owned(),
        ("windows", "x86_64") => "win_amd64".to_owned(),
        ("windows", "aarch64") => "win_arm64".to_owned(),
        (os, arch) => bail!("no wheel platform tag known for {os}/{arch}"),
    })
}

/// The files of a Python package folder, sorted, without bytecode caches.
fn python_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![folder.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                if name != "__pycache__" && !name.ends_with(".egg-info") {
                    pending.push(path);
                }
            } else if !name.ends_with(".pyc") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `path` with `/` separators, as zip and RECORD want.
fn zip_path(path: &Path) -> String {
    path.components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The core metadata of the wheel, from the two pyproject files.
struct Metadata {
    name: String,
    version: String,
    summary: String,
    requires_python: String,
    requires: BTreeSet<String>,
    extras: Vec<(String, Vec<String>)>,
    readme: String,
}

impl Metadata {
    fn read(root: &Path) -> Result<Self> {
        let sdk = pyproject(&root.join("runtime/python/pyproject.toml"))?;
        let generated = pyproject(&root.join("generated/python/pyproject.toml"))?;
        let project = |doc: &toml::Table| -> Result<toml::Table> {
            doc.get("project")
                .and_then(toml::Value::as_table)
                .cloned()
                .context("pyproject.toml has no [project] table")
        };
        let (sdk, generated) = (project(&sdk)?, project(&generated)?);
        let text = |key: &str| -> Result<String> {
            sdk.get(key)
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("runtime/python/pyproject.toml: no project.{key}"))
        };
        let bundled = generated
            .get("name")
            .and_then(toml::Value::as_str)
            .context("generated/python/pyproject.toml: no project.name")?
            .to_owned();
        // Dependencies of both packages, except the generated package the wheel carries.
        let mut requires = BTreeSet::new();
        for project in [&sdk, &generated] {
            for requirement in strings(project.get("dependencies")) {
                if requirement_name(&requirement) != bundled {
                    requires.insert(requirement);
                }
            }
        }
        let extras = sdk
            .get("optional-dependencies")
            .and_then(toml::Value::as_table)
            .map(|table| {
                table
                    .iter()
                    .map(|(extra, list)| (extra.clone(), strings(Some(list))))
                    .collect()
            })
            .unwrap_or_default();
        let readme = match sdk.get("readme").and_then(toml::Value::as_str) {
            Some(file) => std::fs::read_to_string(root.join("runtime/python").join(file))
                .with_context(|| format!("reading the readme {file}"))?,
            None => String::new(),
        };
        Ok(Metadata {
            name: text("name")?,
            version: text("version")?,
            summary: text("description")?,
            requires_python: text("requires-python")?,
            requires,
            extras,
            readme,
        })
    }

    /// The `METADATA` file (core metadata 2.1).
    fn render(&self) -> String {
        let mut out = format!(
            "Metadata-Version: 2.1\nName: {}\nVersion: {}\nSummary: {}\nRequires-Python: {}\n",
            self.name, self.version, self.summary, self.requires_python
        );
        for requirement in &self.requires {
            out.push_str(&format!("Requires-Dist: {requirement}\n"));
        }
        for (extra, requirements) in &self.extras {
            out.push_str(&format!("Provides-Extra: {extra}\n"));
            for requirement in requirements {
                out.push_str(&format!(
                    "Requires-Dist: {requirement}; extra == \"{extra}\"\n"
                ));
            }
        }
        if !self.readme.is_empty() {
            out.push_str("Description-Content-Type: text/markdown\n\n");
            out.push_str(&self.readme);
        }
        out
    }
}

fn pyproject(path: &Path) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse()
        .with_context(|| format!("parsing {}", path.display()))
}

fn strings(value: Option<&toml::Value>) -> Vec<String> {
    value
        .and_then(toml::Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The distribution name a requirement such as `grpcio>=1.66` names.
fn requirement_name(requirement: &str) -> &str {
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(requirement.len());
    requirement[..end].trim()
}

/// A wheel being written: the zip, and the RECORD lines of what is in it.
struct Wheel {
    zip: ZipWriter<File>,
    record: String,
}

impl Wheel {
    fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Wheel {
            zip: ZipWriter::new(file),
            record: String::new(),
        })
    }

    fn options(mode: u32) -> SimpleFileOptions {
        // The default timestamp (1980-01-01): the same inputs give the same wheel.
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(mode)
            .large_file(false)
    }

    /// Adds the file at `source` as `name`, streaming it through the digest.
    fn add_file(&mut self, name: &str, source: &Path, mode: u32) -> Result<()> {
        let mut input =
            File::open(source).with_context(|| format!("opening {}", source.display()))?;
        self.zip.start_file(name, Self::options(mode))?;
        let mut digest = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = input.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            digest.update(&buffer[..read]);
            self.zip.write_all(&buffer[..read])?;
            size += read as u64;
        }
        self.record_line(name, digest, size);
        Ok(())
    }

    /// Adds `bytes` as `name`.
    fn add_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.zip.start_file(name, Self::options(0o644))?;
        self.zip.write_all(bytes)?;
        let mut digest = Sha256::new();
        digest.update(bytes);
        self.record_line(name, digest, bytes.len() as u64);
        Ok(())
    }

    fn record_line(&mut self, name: &str, digest: Sha256, size: u64) {
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.finalize());
        self.record
            .push_str(&format!("{name},sha256={hash},{size}\n"));
    }

    /// Writes the RECORD (which lists itself without a digest) and closes the zip.
    fn finish(mut self, record_name: &str) -> Result<()> {
        let mut record = std::mem::take(&mut self.record);
        record.push_str(&format!("{record_name},,\n"));
        self.zip.start_file(record_name, Self::options(0o644))?;
        self.zip.write_all(record.as_bytes())?;
        self.zip.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::requirement_name;

    #[test]
    fn requirement_names_stop_at_the_version() {
        assert_eq!(requirement_name("grpcio>=1.66"), "grpcio");
        assert_eq!(requirement_name("mlbridge-proto"), "mlbridge-proto");
        assert_eq!(requirement_name("numpy >= 1.22"), "numpy");
        assert_eq!(requirement_name("protobuf[x]==6"), "protobuf");
    }
}
