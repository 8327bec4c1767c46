//! Parses `.proto` files with protox (never `protoc`) into a descriptor pool, and remembers
//! what the parser saw before resolution so the output can match protoc byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use miette::Diagnostic;
use prost_reflect::{DescriptorPool, FileDescriptor};
use prost_types::{DescriptorProto, FileDescriptorProto};
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

use crate::editions;
use crate::error::{Error, Result};

/// The parsed input: every file named on the command line plus everything they import.
#[derive(Debug)]
pub(crate) struct ProtoSet {
    pool: DescriptorPool,
    targets: Vec<String>,
    as_written: AsWritten,
    sources: Vec<PathBuf>,
}

/// What the source said that the resolved descriptors no longer tell, and protoc keeps in
/// the descriptors it embeds.
#[derive(Debug, Default)]
pub(crate) struct AsWritten {
    /// Fields (full name) whose `json_name` the user wrote.
    pub explicit_json_names: BTreeSet<String>,
    /// Methods (full name) written with a body (`{}`, `{;}`) and no option in it: protoc
    /// gives them an empty `MethodOptions`, protox none.
    pub empty_method_bodies: BTreeSet<String>,
    /// Files (name) written in an edition (`edition = "2023";`), with the edition's
    /// `google.protobuf.Edition` number. The descriptor pool holds them as proto2 files,
    /// which is what editions start from (prost-reflect 0.16 knows no editions), and
    /// the generators read their features from the options (see `crate::editions`).
    pub editions: BTreeMap<String, i32>,
}

impl AsWritten {
    /// Whether the user wrote `json_name` on this field (full name), which protoc keeps in
    /// the descriptors it embeds; computed JSON names are not embedded.
    pub(crate) fn has_explicit_json_name(&self, field_full_name: &str) -> bool {
        self.explicit_json_names.contains(field_full_name)
    }

    /// Whether this method (full name) was written with an empty body, for which protoc
    /// embeds an empty options message.
    pub(crate) fn has_empty_method_body(&self, method_full_name: &str) -> bool {
        self.empty_method_bodies.contains(method_full_name)
    }

    /// The `google.protobuf.Edition` number of a file written in an edition.
    pub(crate) fn edition(&self, file: &str) -> Option<i32> {
        self.editions.get(file).copied()
    }
}

/// protoc's `descriptor.proto` (see `codegen/proto/google/protobuf/README.md`): it declares
/// every editions feature, which the copy inside prost-reflect does not.
const DESCRIPTOR_PROTO: &str = include_str!("../proto/google/protobuf/descriptor.proto");
const DESCRIPTOR_PROTO_NAME: &str = "google/protobuf/descriptor.proto";

/// Serves the bundled `descriptor.proto`, after the include folders and before protox's
/// well-known types, when editions files are read (otherwise the well-known one serves,
/// as before: what a file imports, reflection serves).
struct BundledDescriptorResolver;

impl FileResolver for BundledDescriptorResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == DESCRIPTOR_PROTO_NAME {
            File::from_source(name, DESCRIPTOR_PROTO)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
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
        let (first, saw_editions) = Self::compile(includes, protos, false);
        if !saw_editions {
            return first;
        }
        // Options in editions files name features (`features.enforce_naming_style`, ...)
        // that only a recent descriptor.proto declares, and prost-reflect resolves options
        // against the pool's descriptor.proto before its own: load that first, then the
        // files again.
        Self::compile(includes, protos, true).0
    }

    /// Compiles `protos`, `descriptor.proto` first if asked; also says whether any file
    /// read was written in an edition (even if compiling failed).
    fn compile(
        includes: &[PathBuf],
        protos: &[PathBuf],
        descriptor_first: bool,
    ) -> (Result<Self>, bool) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let result = Self::compile_into(includes, protos, descriptor_first, &seen);
        let saw_editions = !seen
            .lock()
            .expect("resolver lock poisoned")
            .as_written
            .editions
            .is_empty();
        let saw_editions = saw_editions
            || result
                .as_ref()
                .is_ok_and(|set| !set.as_written.editions.is_empty());
        (result, saw_editions)
    }

    fn compile_into(
        includes: &[PathBuf],
        protos: &[PathBuf],
        descriptor_first: bool,
        seen: &Arc<Mutex<Seen>>,
    ) -> Result<Self> {
        let mut chain = ChainFileResolver::new();
        for include in includes {
            chain.add(IncludeFileResolver::new(include.clone()));
        }
        if descriptor_first {
            chain.add(BundledDescriptorResolver);
        }
        chain.add(GoogleFileResolver::new());
        let resolver = RecordingResolver {
            inner: chain,
            seen: Arc::clone(seen),
        };
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true).include_source_info(true);
        if descriptor_first {
            compiler
                .open_file(DESCRIPTOR_PROTO_NAME)
                .map_err(proto_error)?;
        }
        for proto in protos {
            compiler.open_file(proto).map_err(proto_error)?;
        }
        // The descriptor.proto opened above is a target only if asked for.
        let asked_for_descriptor = protos
            .iter()
            .any(|proto| file_name(includes, proto) == DESCRIPTOR_PROTO_NAME);
        let targets = compiler
            .files()
            .filter(|file| !file.is_import())
            .filter(|file| {
                !descriptor_first || asked_for_descriptor || file.name() != DESCRIPTOR_PROTO_NAME
            })
            .map(|file| file.name().to_owned())
            .collect();
        let pool = compiler.descriptor_pool();
        let seen = std::mem::take(&mut *seen.lock().expect("resolver lock poisoned"));
        Ok(ProtoSet {
            pool,
            targets,
            as_written: seen.as_written,
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

    /// What the parser saw that the descriptors do not keep.
    pub(crate) fn as_written(&self) -> &AsWritten {
        &self.as_written
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

/// The name protox gives `proto` (a path under an include folder, or a name already):
/// relative to the first include folder that holds it, `/`-separated.
fn file_name(includes: &[PathBuf], proto: &Path) -> String {
    let relative = includes
        .iter()
        .find_map(|include| proto.strip_prefix(include).ok())
        .unwrap_or(proto);
    relative
        .components()
        .filter(|part| !matches!(part, std::path::Component::CurDir))
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Debug, Default)]
struct Seen {
    as_written: AsWritten,
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
        if let Some(path) = file.path() {
            seen.sources.push(path.to_owned());
        }
        let proto = file.file_descriptor_proto();
        let prefix = proto.package().to_owned();
        for message in &proto.message_type {
            collect_json_names(&prefix, message, &mut seen.as_written.explicit_json_names);
        }
        if let Some(source) = file.source() {
            collect_empty_method_bodies(proto, source, &mut seen.as_written.empty_method_bodies);
        }
        if let Some(edition) = editions::edition(&file)? {
            seen.as_written.editions.insert(name.to_owned(), edition);
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

/// Methods without options whose declaration ends in `}` rather than `;`: protoc's parser
/// creates the options message as soon as it sees the body, so its descriptor has an empty
/// one; protox's leaves `options` unset.
fn collect_empty_method_bodies(
    proto: &FileDescriptorProto,
    source: &str,
    out: &mut BTreeSet<String>,
) {
    // descriptor.proto field numbers: FileDescriptorProto.service, .method.
    const FILE_SERVICE: i32 = 6;
    const SERVICE_METHOD: i32 = 2;
    let Some(info) = &proto.source_code_info else {
        return;
    };
    for location in &info.location {
        let [FILE_SERVICE, service, SERVICE_METHOD, method] = location.path[..] else {
            continue;
        };
        let (Ok(service), Ok(method)) = (usize::try_from(service), usize::try_from(method)) else {
            continue;
        };
        let Some(service) = proto.service.get(service) else {
            continue;
        };
        let Some(descriptor) = service.method.get(method) else {
            continue;
        };
        if descriptor.options.is_some() {
            continue;
        }
        if declaration_end(source, &location.span).is_some_and(|end| end == b'}') {
            let service_name = join_name(proto.package(), service.name());
            out.insert(join_name(&service_name, descriptor.name()));
        }
    }
}

/// The last byte of the text a source-info span covers (`[line, column, end_column]` or
/// `[line, column, end_line, end_column]`, zero-based, columns in bytes as protox counts).
fn declaration_end(source: &str, span: &[i32]) -> Option<u8> {
    let (end_line, end_column) = match *span {
        [line, _, end_column] => (line, end_column),
        [_, _, end_line, end_column] => (end_line, end_column),
        _ => return None,
    };
    let line_start = match usize::try_from(end_line).ok()? {
        0 => 0,
        line => source.match_indices('\n').nth(line - 1)?.0 + 1,
    };
    let end = line_start + usize::try_from(end_column).ok()?;
    source.as_bytes().get(end.checked_sub(1)?).copied()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(source: &str) -> ProtoSet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wait.proto"), source).unwrap();
        ProtoSet::load(&[dir.path().to_owned()], &["wait.proto".into()]).unwrap()
    }

    #[test]
    fn methods_with_an_empty_body_are_remembered() {
        let set = load(
            "syntax = \"proto3\";\npackage w.v1;\nmessage M {}\nservice S {\n  rpc A(M) returns (M) {}\n  rpc B(M) returns (M);\n  rpc C(M) returns (M) {\n    ;\n  }\n  rpc D(M) returns (M) { option deprecated = true; }\n}\nservice T { rpc E(M) returns (M) {;} }\n",
        );
        let names: Vec<&str> = set
            .as_written()
            .empty_method_bodies
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(names, ["w.v1.S.A", "w.v1.S.C", "w.v1.T.E"]);
        assert!(set.as_written().has_empty_method_body("w.v1.S.A"));
        assert!(!set.as_written().has_empty_method_body("w.v1.S.B"));
    }

    #[test]
    fn file_names_are_relative_to_the_include_folder() {
        let includes = [PathBuf::from("protos"), PathBuf::from(".")];
        let name = |path: &str| file_name(&includes, Path::new(path));
        assert_eq!(name("protos/a/b.proto"), "a/b.proto");
        assert_eq!(
            name("./google/protobuf/descriptor.proto"),
            DESCRIPTOR_PROTO_NAME
        );
        assert_eq!(
            name("google/protobuf/descriptor.proto"),
            DESCRIPTOR_PROTO_NAME
        );
        assert_ne!(
            name("foo/google/protobuf/descriptor.proto"),
            DESCRIPTOR_PROTO_NAME
        );
    }

    #[test]
    fn declaration_end_reads_one_and_multi_line_spans() {
        let source = "ab;\ncd {\n}\n";
        assert_eq!(declaration_end(source, &[0, 0, 3]), Some(b';'));
        assert_eq!(declaration_end(source, &[1, 0, 2, 1]), Some(b'}'));
        assert_eq!(declaration_end(source, &[1, 0, 9, 1]), None);
        assert_eq!(declaration_end(source, &[0, 0]), None);
    }
}
