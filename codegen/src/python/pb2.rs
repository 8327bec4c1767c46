//! `*_pb2.py`: the module protoc writes, in protoc's exact layout, from the descriptor
//! bytes protoc would embed.

use std::borrow::Cow;

use askama::Template;
use prost_reflect::{FileDescriptor, Kind, MessageDescriptor};

use super::wire::{self, WireField};
use super::{PythonContext, escape};
use crate::error::Result;
use crate::load::AsWritten;

#[derive(Template)]
#[template(path = "python/pb2.py", escape = "none")]
struct Pb2<'a> {
    header: &'a str,
    source: &'a str,
    version: &'a super::ProtobufVersion,
    /// Import statements, a blank line, public re-exports, a blank line: protoc's block.
    imports: String,
    serialized: String,
    module: String,
    /// The indented body of the `if not _descriptor._USE_C_DESCRIPTORS:` block.
    fixups: String,
    generic_services: bool,
}

/// Renders `*_pb2.py` for `file`.
pub(crate) fn render(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Result<String> {
    let serialized = ctx.embedded_descriptor(file);
    let mut import_lines = Vec::new();
    let mut uses_importlib = false;
    for dependency in file.dependencies() {
        let module = ctx.module(dependency.name(), "_pb2");
        let alias = crate::names::python_module_alias(&module);
        if module.split('.').any(crate::names::is_python_keyword) {
            if !uses_importlib {
                import_lines.push("import importlib".to_owned());
                uses_importlib = true;
            }
            import_lines.push(format!("{alias} = importlib.import_module('{module}')"));
        } else {
            import_lines.push(match module.rsplit_once('.') {
                Some((parent, leaf)) => format!("from {parent} import {leaf} as {alias}"),
                None => format!("import {module} as {alias}"),
            });
        }
        copy_public_aliases(ctx, &alias, &dependency, &mut import_lines);
    }
    let mut imports: String = import_lines
        .iter()
        .map(|line| format!("{line}\n"))
        .collect();
    imports.push('\n');
    for dependency in file.public_dependencies() {
        imports.push_str(&format!(
            "from {} import *\n",
            ctx.module(dependency.name(), "_pb2")
        ));
    }
    imports.push('\n');

    let mut fixups = Vec::new();
    option_fixups(&serialized, &mut fixups);
    interval_fixups(&serialized, &mut fixups);

    let page = Pb2 {
        header: super::HEADER,
        source: file.name(),
        version: &ctx.settings.protobuf_version,
        imports,
        serialized: escape::c_hex_escape(&serialized),
        module: ctx.module(file.name(), "_pb2"),
        fixups: fixups.iter().map(|line| format!("  {line}\n")).collect(),
        generic_services: file
            .file_descriptor_proto()
            .options
            .as_ref()
            .is_some_and(|o| o.py_generic_services()),
    };
    super::render_template("python/pb2.py", &page)
}

fn copy_public_aliases(
    ctx: &PythonContext<'_>,
    copy_from: &str,
    file: &FileDescriptor,
    lines: &mut Vec<String>,
) {
    for public in file.public_dependencies() {
        let module = ctx.module(public.name(), "_pb2");
        let alias = crate::names::python_module_alias(&module);
        lines.push(format!(
            "try:\n  {alias} = {copy_from}.{alias}\nexcept AttributeError:\n  {alias} = {copy_from}.{module}"
        ));
        copy_public_aliases(ctx, copy_from, &public, lines);
    }
}

// Field numbers in descriptor.proto.
const FILE_PACKAGE: u32 = 2;
const FILE_MESSAGE: u32 = 4;
const FILE_ENUM: u32 = 5;
const FILE_SERVICE: u32 = 6;
const FILE_EXTENSION: u32 = 7;
const FILE_OPTIONS: u32 = 8;
const FILE_SYNTAX: u32 = 12;
const FILE_EDITION: u32 = 14;
const MESSAGE_FIELD: u32 = 2;
const MESSAGE_NESTED: u32 = 3;
const MESSAGE_ENUM: u32 = 4;
const MESSAGE_EXTENSION: u32 = 6;
const MESSAGE_OPTIONS: u32 = 7;
const MESSAGE_ONEOF: u32 = 8;
const FIELD_OPTIONS: u32 = 8;
const ONEOF_OPTIONS: u32 = 2;
const ENUM_VALUE: u32 = 2;
const ENUM_OPTIONS: u32 = 3;
const ENUM_VALUE_OPTIONS: u32 = 3;
const SERVICE_METHOD: u32 = 2;
const SERVICE_OPTIONS: u32 = 3;
const METHOD_OPTIONS: u32 = 4;
const NAME: u32 = 1;

fn name(bytes: &[u8]) -> &str {
    wire::single(bytes, NAME).map_or("", |n| std::str::from_utf8(n).unwrap_or(""))
}

/// `_globals['X']._loaded_options = None` and `_serialized_options`, in protoc's order.
fn option_fixups(file: &[u8], out: &mut Vec<String>) {
    if !fix_options(file, FILE_OPTIONS, "DESCRIPTOR", out) {
        out.push("DESCRIPTOR._loaded_options = None".to_owned());
    }
    for enumeration in wire::repeated(file, FILE_ENUM) {
        enum_options(enumeration, &descriptor_name(&[], name(enumeration)), out);
    }
    for extension in wire::repeated(file, FILE_EXTENSION) {
        fix_options(extension, FIELD_OPTIONS, name(extension), out);
    }
    for message in wire::repeated(file, FILE_MESSAGE) {
        message_options(message, &mut Vec::new(), out);
    }
    for service in wire::repeated(file, FILE_SERVICE) {
        let service_name = format!("_{}", name(service).to_ascii_uppercase());
        fix_options(service, SERVICE_OPTIONS, &service_name, out);
        for method in wire::repeated(service, SERVICE_METHOD) {
            let target = format!("{service_name}.methods_by_name['{}']", name(method));
            fix_options(method, METHOD_OPTIONS, &target, out);
        }
    }
}

fn message_options<'a>(message: &'a [u8], scope: &mut Vec<&'a str>, out: &mut Vec<String>) {
    let own = descriptor_name(scope, name(message));
    scope.push(name(message));
    for nested in wire::repeated(message, MESSAGE_NESTED) {
        message_options(nested, scope, out);
    }
    for oneof in wire::repeated(message, MESSAGE_ONEOF) {
        let target = format!("{own}.oneofs_by_name['{}']", name(oneof));
        fix_options(oneof, ONEOF_OPTIONS, &target, out);
    }
    for enumeration in wire::repeated(message, MESSAGE_ENUM) {
        enum_options(enumeration, &descriptor_name(scope, name(enumeration)), out);
    }
    for field in wire::repeated(message, MESSAGE_FIELD) {
        let target = format!("{own}.fields_by_name['{}']", name(field));
        fix_options(field, FIELD_OPTIONS, &target, out);
    }
    for extension in wire::repeated(message, MESSAGE_EXTENSION) {
        let target = format!("{own}.extensions_by_name['{}']", name(extension));
        fix_options(extension, FIELD_OPTIONS, &target, out);
    }
    scope.pop();
    fix_options(message, MESSAGE_OPTIONS, &own, out);
}

fn enum_options(enumeration: &[u8], own: &str, out: &mut Vec<String>) {
    fix_options(enumeration, ENUM_OPTIONS, own, out);
    for value in wire::repeated(enumeration, ENUM_VALUE) {
        let target = format!("{own}.values_by_name[\"{}\"]", name(value));
        fix_options(value, ENUM_VALUE_OPTIONS, &target, out);
    }
}

/// Emits the two fix-up lines when the element has non-empty options; reports whether it did.
fn fix_options(element: &[u8], options_field: u32, target: &str, out: &mut Vec<String>) -> bool {
    let Some(options) = wire::single(element, options_field).filter(|o| !o.is_empty()) else {
        return false;
    };
    let target = match target.split_once('.') {
        Some((head, rest)) => format!("_globals['{head}'].{rest}"),
        None => format!("_globals['{target}']"),
    };
    out.push(format!("{target}._loaded_options = None"));
    out.push(format!(
        "{target}._serialized_options = b'{}'",
        escape::c_escape(options)
    ));
    true
}

/// `_serialized_start` / `_serialized_end` of every enum, message and service: the first
/// occurrence of the element's bytes in the file, as protoc computes it.
fn interval_fixups(file: &[u8], out: &mut Vec<String>) {
    let mut interval = |element: &[u8], global: String| {
        let start = find(file, element);
        out.push(format!("_globals['{global}']._serialized_start={start}"));
        out.push(format!(
            "_globals['{global}']._serialized_end={}",
            start + element.len()
        ));
    };
    for enumeration in wire::repeated(file, FILE_ENUM) {
        interval(enumeration, descriptor_name(&[], name(enumeration)));
    }
    fn message_intervals<'a>(
        message: &'a [u8],
        scope: &mut Vec<&'a str>,
        interval: &mut dyn FnMut(&[u8], String),
    ) {
        interval(message, descriptor_name(scope, name(message)));
        scope.push(name(message));
        for nested in wire::repeated(message, MESSAGE_NESTED) {
            message_intervals(nested, scope, interval);
        }
        for enumeration in wire::repeated(message, MESSAGE_ENUM) {
            interval(enumeration, descriptor_name(scope, name(enumeration)));
        }
        scope.pop();
    }
    for message in wire::repeated(file, FILE_MESSAGE) {
        message_intervals(message, &mut Vec::new(), &mut interval);
    }
    for service in wire::repeated(file, FILE_SERVICE) {
        interval(service, format!("_{}", name(service).to_ascii_uppercase()));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len().max(1))
        .position(|window| window == needle)
        .expect("an element's bytes occur in its file's bytes")
}

/// protoc's module-level descriptor name: `_OUTER_INNER`.
fn descriptor_name(scope: &[&str], name: &str) -> String {
    let mut out = String::from("_");
    for part in scope {
        out.push_str(&part.to_ascii_uppercase());
        out.push('_');
    }
    out.push_str(&name.to_ascii_uppercase());
    out
}

/// The protoc-equivalent bytes of `file`: no source info, no option protoc's retention
/// rules leave out, `json_name` only where the user wrote it, an empty options message on
/// methods written with an empty body, and the edition of a file written in one.
pub(crate) fn protoc_bytes(file: &FileDescriptor, as_written: &AsWritten) -> Vec<u8> {
    let encoded = file.encode_to_vec();
    let pool = file.parent_pool();
    let encoded = match pool.get_message_by_name("google.protobuf.FileDescriptorProto") {
        Some(descriptor) => without_source_retention(&encoded, &descriptor).into_owned(),
        None => encoded,
    };
    let edition = as_written.edition(file.name());
    let mut out = embedded_fields(&encoded, as_written, edition.is_some());
    if let Some(edition) = edition {
        // The pool holds the file as proto2; protoc's descriptor says what it is (these
        // are its last two fields, in field order).
        wire::write_len_field(&mut out, FILE_SYNTAX, b"editions");
        wire::write_varint(&mut out, u64::from(FILE_EDITION << 3));
        wire::write_varint(
            &mut out,
            u64::try_from(edition).expect("editions are positive"),
        );
    }
    out
}

fn embedded_fields(encoded: &[u8], as_written: &AsWritten, editions: bool) -> Vec<u8> {
    let explicit_json = &|name: &str| as_written.has_explicit_json_name(name);
    let package = wire::single(encoded, FILE_PACKAGE)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(encoded.len());
    for field in wire::fields(encoded) {
        match field.number {
            9 => {}                       // source_code_info
            FILE_SYNTAX if editions => {} // the parser's "proto2" marker, rewritten after
            FILE_MESSAGE => {
                let message = rewrite_message(field.payload, &package, explicit_json);
                wire::write_len_field(&mut out, FILE_MESSAGE, &message);
            }
            FILE_EXTENSION => {
                let extension = rewrite_field(field.payload, None, explicit_json);
                wire::write_len_field(&mut out, FILE_EXTENSION, &extension);
            }
            FILE_SERVICE => {
                let service = rewrite_service(field.payload, &package, as_written);
                wire::write_len_field(&mut out, FILE_SERVICE, &service);
            }
            _ => out.extend_from_slice(field.raw),
        }
    }
    out
}

/// `message` (encoded, of type `descriptor`) without the fields declared
/// `retention = RETENTION_SOURCE` (such as `features.enforce_naming_style`, or a custom
/// option so declared), at any depth, and without an element's `options` that only they
/// filled: protoc leaves them out of what it embeds.
fn without_source_retention<'m>(
    message: &'m [u8],
    descriptor: &MessageDescriptor,
) -> Cow<'m, [u8]> {
    const RETENTION_SOURCE: i32 = 2;
    let mut out: Option<Vec<u8>> = None;
    let mut offset = 0;
    for field in wire::fields(message) {
        // An element's `options` (a field of a descriptor message) is left out when only
        // source-retention options filled it; a message inside options stays, even empty.
        let (declared, is_options) = match descriptor.get_field(field.number) {
            Some(declared) => (
                Some((declared.options(), declared.kind())),
                declared.name() == "options" && descriptor.package_name() == "google.protobuf",
            ),
            None => (
                descriptor
                    .get_extension(field.number)
                    .map(|extension| (extension.options(), extension.kind())),
                false,
            ),
        };
        let kept: Cow<'_, [u8]> = match declared {
            None => Cow::Borrowed(field.raw),
            Some((options, _))
                if options
                    .get_field_by_name("retention")
                    .and_then(|retention| retention.as_enum_number())
                    == Some(RETENTION_SOURCE) =>
            {
                Cow::Borrowed(&[])
            }
            Some((_, Kind::Message(inner))) if field.wire_type == 2 => {
                match without_source_retention(field.payload, &inner) {
                    Cow::Borrowed(_) => Cow::Borrowed(field.raw),
                    Cow::Owned(payload) if payload.is_empty() && is_options => Cow::Borrowed(&[]),
                    Cow::Owned(payload) => {
                        let mut rewritten = Vec::with_capacity(payload.len() + 4);
                        wire::write_len_field(&mut rewritten, field.number, &payload);
                        Cow::Owned(rewritten)
                    }
                }
            }
            Some(_) => Cow::Borrowed(field.raw),
        };
        match &mut out {
            Some(out) => out.extend_from_slice(&kept),
            None if kept.as_ref() == field.raw => {}
            // The first change: copy what came before it.
            None => out = Some([&message[..offset], kept.as_ref()].concat()),
        }
        offset += field.raw.len();
    }
    match out {
        Some(out) => Cow::Owned(out),
        None => Cow::Borrowed(message),
    }
}

fn rewrite_service(service: &[u8], package: &str, as_written: &AsWritten) -> Vec<u8> {
    let full_name = join(package, name(service));
    let mut out = Vec::with_capacity(service.len() + 2);
    for field in wire::fields(service) {
        match field.number {
            SERVICE_METHOD
                if as_written.has_empty_method_body(&join(&full_name, name(field.payload))) =>
            {
                let method = with_empty_options(field.payload);
                wire::write_len_field(&mut out, SERVICE_METHOD, &method);
            }
            _ => out.extend_from_slice(field.raw),
        }
    }
    out
}

/// `method` with an empty `options` field, in field-number order as protoc writes it;
/// unchanged if it already has options.
fn with_empty_options(method: &[u8]) -> Vec<u8> {
    let fields = wire::fields(method);
    if fields.iter().any(|f| f.number == METHOD_OPTIONS) {
        return method.to_vec();
    }
    let mut out = Vec::with_capacity(method.len() + 2);
    let mut written = false;
    for field in fields {
        if !written && field.number > METHOD_OPTIONS {
            wire::write_len_field(&mut out, METHOD_OPTIONS, &[]);
            written = true;
        }
        out.extend_from_slice(field.raw);
    }
    if !written {
        wire::write_len_field(&mut out, METHOD_OPTIONS, &[]);
    }
    out
}

fn rewrite_message(message: &[u8], scope: &str, explicit_json: &dyn Fn(&str) -> bool) -> Vec<u8> {
    let full_name = join(scope, name(message));
    let mut out = Vec::with_capacity(message.len());
    for field in wire::fields(message) {
        match field.number {
            MESSAGE_FIELD => {
                let rewritten = rewrite_field(field.payload, Some(&full_name), explicit_json);
                wire::write_len_field(&mut out, MESSAGE_FIELD, &rewritten);
            }
            MESSAGE_EXTENSION => {
                let rewritten = rewrite_field(field.payload, None, explicit_json);
                wire::write_len_field(&mut out, MESSAGE_EXTENSION, &rewritten);
            }
            MESSAGE_NESTED => {
                let nested = rewrite_message(field.payload, &full_name, explicit_json);
                wire::write_len_field(&mut out, MESSAGE_NESTED, &nested);
            }
            _ => out.extend_from_slice(field.raw),
        }
    }
    out
}

fn rewrite_field(
    field: &[u8],
    message: Option<&str>,
    explicit_json: &dyn Fn(&str) -> bool,
) -> Vec<u8> {
    const JSON_NAME: u32 = 10;
    let keep_json = message.is_some_and(|m| explicit_json(&join(m, name(field))));
    let mut out = Vec::with_capacity(field.len());
    for part in wire::fields(field) {
        let WireField { number, raw, .. } = part;
        if number != JSON_NAME || keep_json {
            out.extend_from_slice(raw);
        }
    }
    out
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::{FileDescriptorProto, MethodDescriptorProto, MethodOptions};

    use super::*;
    use crate::load::ProtoSet;

    /// The descriptor that `_pb2.py` embeds for `source`, decoded.
    fn embedded(source: &str) -> FileDescriptorProto {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wait.proto"), source).unwrap();
        let set = ProtoSet::load(&[dir.path().to_owned()], &["wait.proto".into()]).unwrap();
        let file = set.targets().next().unwrap();
        let bytes = protoc_bytes(&file, set.as_written());
        FileDescriptorProto::decode(&bytes[..]).unwrap()
    }

    const WAITER: &str = r#"syntax = "proto3";
package w.v1;
message Req {}
message Resp {}
service Waiter {
  rpc Wait(Req) returns (Resp) {}
  rpc WaitLonger(Req) returns (stream Resp) {;}
  rpc Check(Req) returns (Resp); // {}
  rpc WaitAll(stream Req) returns (Resp) {
    // Nothing to configure.
  }
  rpc Old(Req) returns (Resp) { option deprecated = true; }
}
"#;

    #[test]
    fn empty_rpc_bodies_get_an_empty_options_message() {
        let file = embedded(WAITER);
        let options: Vec<(&str, Option<&MethodOptions>)> = file.service[0]
            .method
            .iter()
            .map(|m| (m.name(), m.options.as_ref()))
            .collect();
        let empty = MethodOptions::default();
        let deprecated = MethodOptions {
            deprecated: Some(true),
            ..MethodOptions::default()
        };
        assert_eq!(
            options,
            [
                ("Wait", Some(&empty)),
                ("WaitLonger", Some(&empty)),
                ("Check", None),
                ("WaitAll", Some(&empty)),
                ("Old", Some(&deprecated)),
            ]
        );
    }

    #[test]
    fn empty_options_go_in_field_number_order() {
        let method = MethodDescriptorProto {
            name: Some("WaitLonger".to_owned()),
            input_type: Some(".w.v1.Req".to_owned()),
            output_type: Some(".w.v1.Resp".to_owned()),
            server_streaming: Some(true),
            ..MethodDescriptorProto::default()
        };
        let expected = MethodDescriptorProto {
            options: Some(MethodOptions::default()),
            ..method.clone()
        };
        // protoc (and prost) write fields by number: options (4) before server_streaming (6).
        assert_eq!(
            with_empty_options(&method.encode_to_vec()),
            expected.encode_to_vec()
        );
        let plain = MethodDescriptorProto {
            server_streaming: None,
            ..method
        };
        let plain_expected = MethodDescriptorProto {
            options: Some(MethodOptions::default()),
            ..plain.clone()
        };
        assert_eq!(
            with_empty_options(&plain.encode_to_vec()),
            plain_expected.encode_to_vec()
        );
        // Options already there are left alone.
        assert_eq!(
            with_empty_options(&expected.encode_to_vec()),
            expected.encode_to_vec()
        );
    }

    #[test]
    fn methods_without_a_body_get_no_options() {
        let file = embedded(
            "syntax = \"proto3\";\npackage w.v1;\nmessage M {}\nservice S {\n  rpc A(M) returns (M);\n  rpc B(stream M) returns (stream M); // {}\n}\n",
        );
        assert!(file.service[0].method.iter().all(|m| m.options.is_none()));
    }
}
