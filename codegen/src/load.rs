//! Parses `.proto` files with protox (never `protoc`) into a descriptor pool, and remembers
//! what the parser saw before resolution so the output can match protoc byte for byte.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use miette::Diagnostic;
use prost_reflect::{DescriptorPool, FileDescriptor};
use prost_types::{DescriptorProto, FileDescriptorProto};
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

use crate::error::{Error, Result};

/// The parsed input: every file named on the command line plus everything they import.
#[derive(Debug)]
pub(crate) struct ProtoSet {
    pool: DescriptorPool,
    targets: Vec<String>,
    explicit_json_names: BTreeSet<String>,
    sources: Vec<PathBuf>,
}

impl ProtoSet {
    /// Parses `protos` (paths on disk under an include folder, or names relative to one)
    /// using `includes` as the import search path. Well-known types are always available.
    pub(crate) fn load(includes: &[PathBuf], protos: &[PathBuf]) -> Result<Self> {
        if protos.is_empty() {
            return Err(Error::setting("protos", "no .proto files were given"));
        }
        if includes.is_empty() {
            return Err(Error::setting(
                "includes",
                "no include folder was given (-I DIR)",
            ));
        }
        for include in includes {
            if !include.is_dir() {
                return Err(Error::setting(
                    "includes",
                    format!("include folder `{}` does not exist", include.display()),
                ));
            }
        }
        let mut chain = ChainFileResolver::new();
        for include in includes {
            chain.add(IncludeFileResolver::new(include.clone()));
        }
        chain.add(GoogleFileResolver::new());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let resolver = RecordingResolver {
            inner: chain,
            seen: Arc::clone(&seen),
        };
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true).include_source_info(true);
        for proto in protos {
            compiler.open_file(proto).map_err(proto_error)?;
        }
        let targets = compiler
            .files()
            .filter(|file| !file.is_import())
            .map(|file| file.name().to_owned())
            .collect();
        let pool = compiler.descriptor_pool();
        let seen = std::mem::take(&mut *seen.lock().expect("resolver lock poisoned"));
        Ok(ProtoSet {
            pool,
            targets,
            explicit_json_names: seen.explicit_json_names,
            sources: seen.sources,
        })
    }

    /// The files to generate code for, dependencies first.
    pub(crate) fn targets(&self) -> impl Iterator<Item = FileDescriptor> + '_ {
        self.targets.iter().map(|name| {
            self.pool
                .get_file_by_name(name)
                .expect("target is in the pool")
        })
    }

    /// Every file read from disk (targets and their imports), for `rerun-if-changed`.
    pub(crate) fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// Whether the user wrote `json_name` on this field (full name), which protoc keeps in
    /// the descriptors it embeds; computed JSON names are not embedded.
    pub(crate) fn has_explicit_json_name(&self, field_full_name: &str) -> bool {
        self.explicit_json_names.contains(field_full_name)
    }

    /// Every parsed file, imports included.
    pub(crate) fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Every file in the pool with source info, for the Rust generator.
    pub(crate) fn file_descriptor_protos(&self) -> Vec<FileDescriptorProto> {
        self.pool.file_descriptor_protos().cloned().collect()
    }
}

#[derive(Debug, Default)]
struct Seen {
    explicit_json_names: BTreeSet<String>,
    sources: Vec<PathBuf>,
}

/// Wraps the include-path resolver to look at each file as parsed, before protox fills in
/// computed values.
struct RecordingResolver {
    inner: ChainFileResolver,
    seen: Arc<Mutex<Seen>>,
}

impl FileResolver for RecordingResolver {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        self.inner.resolve_path(path)
    }

    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let file = self.inner.open_file(name)?;
        let mut seen = self.seen.lock().expect("resolver lock poisoned");
        let proto = file.file_descriptor_proto();
        let prefix = proto.package().to_owned();
        for message in &proto.message_type {
            collect_json_names(&prefix, message, &mut seen.explicit_json_names);
        }
        if let Some(path) = file.path() {
            seen.sources.push(path.to_owned());
        }
        Ok(file)
    }
}

fn collect_json_names(scope: &str, message: &DescriptorProto, out: &mut BTreeSet<String>) {
    let name = join_name(scope, message.name());
    // The parser synthesizes map entries with JSON names; protoc's do not carry them, and
    // a user cannot write one there.
    let map_entry = message.options.as_ref().is_some_and(|o| o.map_entry());
    for field in message.field.iter().filter(|_| !map_entry) {
        if field.json_name.is_some() {
            out.insert(join_name(&name, field.name()));
        }
    }
    for nested in &message.nested_type {
        collect_json_names(&name, nested, out);
    }
}

fn join_name(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

/// Turns a protox diagnostic into `file:line:column: message`, pointing at the last label
/// (for a name defined twice, the second definition).
fn proto_error(err: protox::Error) -> Error {
    let message = err.to_string();
    let file = err.file().map(str::to_owned);
    let position = err
        .labels()
        .and_then(|labels| labels.last())
        .and_then(|label| {
            let source = err.source_code()?;
            let contents = source.read_span(label.inner(), 0, 0).ok()?;
            Some((contents.line() + 1, contents.column() + 1))
        });
    let mut text = match (file, position) {
        (Some(file), Some((line, column))) => format!("{file}:{line}:{column}: {message}"),
        (Some(file), None) if !message.contains(&file) => format!("{file}: {message}"),
        _ => message,
    };
    if let Some(help) = err.help() {
        text.push_str(&format!(" (help: {help})"));
    }
    Error::Proto(text)
}
