//! `*_pb2.pyi`: a class per message (nested classes in place), its fields, `__init__`,
//! `HasField` / `ClearField` / `WhichOneof`, extensions and `import public` re-exports.

use std::collections::BTreeSet;

use askama::Template;
use prost_reflect::{
    ExtensionDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, OneofDescriptor,
};
use prost_types::{FieldOptions, MessageOptions};

use super::deprecation::{
    self, Kind as Deprecated, enum_deprecated, file_deprecated, is_deprecated, message_deprecated,
};
use super::enums::EnumClass;
use super::types::{Helper, TypeNames};
use super::{Alias, class_alias, class_name, docstring, global_alias};
use crate::comments::{self, Comments};
use crate::error::Result;
use crate::names;
use crate::python::{self, PythonContext};

/// Renders `*_pb2.pyi` for `file`.
pub(crate) fn render(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Result<String> {
    let comments = Comments::new(file.file_descriptor_proto());
    let mut builder = MessagesBuilder {
        types: TypeNames::new(ctx, Some(file.name())),
        comments: &comments,
        file_deprecated: file_deprecated(file),
        blocks: Vec::new(),
    };
    builder.types.imports.require(Helper::Descriptor);
    for enumeration in file.enums() {
        builder.enumeration(&enumeration, 0);
    }
    for message in file.messages() {
        builder.message(&message, 0);
    }
    let extensions = builder.extensions(file.extensions(), "");
    if let Some(error) = builder.types.errors.first() {
        return Err(crate::error::Error::Proto(format!(
            "{}: {error}",
            file.name()
        )));
    }
    let reexports = reexports(ctx, file);
    let stub = MessagesStub {
        header: python::HEADER,
        source: file.name(),
        doc: module_doc(file),
        blocks: builder.blocks,
        extensions,
        imports: builder.types.imports.groups(),
        reexports,
    };
    python::render_template("python/pb2.pyi", &stub)
}

/// `*_pb2.pyi`.
#[derive(Template)]
#[template(path = "python/pb2.pyi", escape = "none")]
struct MessagesStub<'a> {
    header: &'a str,
    source: &'a str,
    /// The module docstring literal, from the comment on `package` or `syntax`.
    doc: Option<String>,
    /// Groups of import statements, separated by blank lines.
    imports: Vec<Vec<String>>,
    /// `from m import X as X` for what `import public` files make part of this module.
    reexports: Vec<String>,
    /// Classes and notes, in the order and at the depth they are declared.
    blocks: Vec<Block>,
    /// Extensions declared at the top level of the file.
    extensions: Vec<Extension>,
}

/// One piece of a `_pb2.pyi`. Nested classes are laid out flat, in declaration order, each
/// carrying its indentation: a message's `Open` comes before its nested classes, its
/// `Close` (the members) after them.
pub(super) enum Block {
    Enum(EnumClass),
    Open(MessageOpen),
    Close(MessageClose),
}

/// The start of a message class: decorators, `class` line, docstring and `DESCRIPTOR`.
pub(super) struct MessageOpen {
    indent: String,
    name: String,
    /// The `@deprecated` argument, if the class is deprecated.
    deprecated: Option<String>,
    doc: Option<String>,
}

/// The members of a message class, after its nested classes.
pub(super) struct MessageClose {
    /// The indentation of the members (one level inside the class).
    indent: String,
    /// `<FIELD>_FIELD_NUMBER` for every field.
    field_numbers: Vec<String>,
    fields: Vec<Field>,
    extensions: Vec<Extension>,
    /// The name of `__init__`'s first parameter: `self`, unless a field takes that name.
    init_self: String,
    init_params: Vec<InitParam>,
    /// The type of `HasField`'s and `ClearField`'s argument (each declared as a class-level
    /// alias, `_HasFieldArgType` and `_ClearFieldArgType`, as mypy-protobuf does).
    has_field: String,
    clear_field: String,
    /// `typing_extensions.TypeAlias`, under its import alias.
    type_alias: String,
    which_oneof: Vec<WhichOneof>,
    /// For a top-level message, the module-level aliases by which the stub names it and
    /// the deprecated classes nested in it.
    aliases: Vec<Alias>,
}

/// A field attribute.
struct Field {
    name: String,
    ty: String,
    /// Messages, repeated fields and maps cannot be assigned: they are properties.
    read_only: bool,
    /// The `@deprecated` argument, if the field is deprecated.
    deprecated: Option<String>,
    /// The docstring literal, indented for where it goes (after an attribute, or inside
    /// the property).
    doc: Option<String>,
}

impl Field {
    /// Whether the field is declared as a property rather than an attribute.
    fn is_property(&self) -> bool {
        self.read_only || self.deprecated.is_some()
    }
}

/// A keyword-only `__init__` parameter.
struct InitParam {
    name: String,
    ty: String,
}

/// One `WhichOneof` signature. For a oneof, its argument and result types are declared
/// as aliases first (`_WhichOneofArgType_<oneof>`, `_WhichOneofReturnType_<oneof>`, as
/// mypy-protobuf names them), and the signature uses them.
struct WhichOneof {
    overload: bool,
    argument: String,
    result: String,
    /// For a oneof: its name and the two aliased types (argument, members).
    oneof: Option<(String, String, String)>,
}

/// An extension: a `<NAME>_FIELD_NUMBER` constant and a descriptor attribute, usable with
/// `Message.Extensions[...]`.
struct Extension {
    constant: String,
    /// Whether the attribute is declared (its name is not a keyword).
    declared: bool,
    name: String,
    ty: String,
    doc: Option<String>,
}

/// Builds the blocks of a `_pb2.pyi`.
pub(super) struct MessagesBuilder<'a> {
    pub(super) types: TypeNames<'a>,
    pub(super) comments: &'a Comments,
    pub(super) file_deprecated: bool,
    pub(super) blocks: Vec<Block>,
}

impl MessagesBuilder<'_> {
    /// Adds `message`, its nested classes and members, declared at `depth`.
    fn message(&mut self, message: &MessageDescriptor, depth: usize) {
        let indent = "    ".repeat(depth);
        self.types.imports.require(Helper::Typing);
        self.types.imports.require(Helper::Message);
        let inner = format!("{indent}    ");
        let own = is_deprecated(
            &message.descriptor_proto().options,
            MessageOptions::deprecated,
        );
        let deprecated = self.deprecated(Deprecated::Message, message.path(), own);
        let open = MessageOpen {
            doc: self.doc(message.path(), &inner),
            deprecated,
            indent,
            name: class_name(message.name()),
        };
        self.blocks.push(Block::Open(open));
        for enumeration in message.child_enums() {
            self.enumeration(&enumeration, depth + 1);
        }
        for nested in message.child_messages() {
            self.message(&nested, depth + 1);
        }
        let close = self.members(message, inner, depth == 0);
        self.blocks.push(Block::Close(close));
    }

    /// The members of `message`, indented by `indent`.
    fn members(&mut self, message: &MessageDescriptor, indent: String, top: bool) -> MessageClose {
        self.types.imports.require(Helper::Builtins);
        let all_fields: Vec<FieldDescriptor> = message.fields().collect();
        let declared: Vec<&FieldDescriptor> = all_fields
            .iter()
            .filter(|field| !names::is_python_keyword(field.name()))
            .collect();
        // `a_b` and `A_b` share a constant; the runtime sets it twice, a stub declares it once.
        let mut field_numbers: Vec<String> = Vec::new();
        for field in &all_fields {
            let constant = field_number_constant(field.name());
            if !field_numbers.contains(&constant) {
                field_numbers.push(constant);
            }
        }

        let mut fields = Vec::new();
        let mut init_params = Vec::new();
        for field in &declared {
            let types = self.types.field(field);
            let own = is_deprecated(
                &field.field_descriptor_proto().options,
                FieldOptions::deprecated,
            );
            let deprecated = self.deprecated(Deprecated::Field, field.path(), own);
            if deprecated.is_some() {
                self.types.imports.require(Helper::TypingExtensions);
            }
            let doc_indent = if types.read_only || deprecated.is_some() {
                format!("{indent}    ")
            } else {
                indent.clone()
            };
            fields.push(Field {
                name: field.name().to_owned(),
                ty: types.attribute,
                read_only: types.read_only,
                deprecated,
                doc: self.doc(field.path(), &doc_indent),
            });
            init_params.push(InitParam {
                name: field.name().to_owned(),
                ty: types.parameter,
            });
        }
        // `self` may be a field name, and so a keyword argument of `__init__`.
        let mut init_self = "self".to_owned();
        while declared.iter().any(|field| field.name() == init_self) {
            init_self.push('_');
        }

        let oneofs: Vec<OneofDescriptor> = message.oneofs().collect();
        let has_field = all_fields
            .iter()
            .filter(|f| !f.is_list() && !f.is_map() && self.types.has_presence(f))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|f| f.name())
            .chain(oneofs.iter().map(|o| o.name()));
        let has_field = self.types.field_names(has_field);
        let clear_field = all_fields
            .iter()
            .map(|f| f.name())
            .chain(oneofs.iter().map(|o| o.name()));
        let clear_field = self.types.field_names(clear_field);
        let which_oneof = if oneofs.is_empty() {
            vec![WhichOneof {
                overload: false,
                argument: self.types.helper(Helper::TypingExtensions, "Never"),
                result: "None".to_owned(),
                oneof: None,
            }]
        } else {
            let overload = oneofs.len() > 1;
            if overload {
                self.types.imports.require(Helper::Typing);
            }
            // By name, as mypy-protobuf orders them (a proto3 `optional` field's synthetic
            // oneof, `_<field>`, sorts first).
            let mut sorted: Vec<&OneofDescriptor> = oneofs.iter().collect();
            sorted.sort_by(|a, b| a.name().cmp(b.name()));
            sorted
                .into_iter()
                .map(|oneof| {
                    let members: Vec<String> = oneof
                        .fields()
                        .map(|f| format!("\"{}\"", f.name()))
                        .collect();
                    let name = oneof.name();
                    WhichOneof {
                        overload,
                        argument: format!("_WhichOneofArgType_{name}"),
                        result: format!("_WhichOneofReturnType_{name} | None"),
                        oneof: Some((
                            name.to_owned(),
                            self.types.field_names([name]),
                            format!(
                                "{}[{}]",
                                self.types.helper(Helper::Typing, "Literal"),
                                members.join(", ")
                            ),
                        )),
                    }
                })
                .collect()
        };
        MessageClose {
            field_numbers,
            fields,
            extensions: self.extensions(message.child_extensions(), &indent),
            init_self,
            init_params,
            has_field,
            clear_field,
            type_alias: self.types.helper(Helper::TypingExtensions, "TypeAlias"),
            which_oneof,
            aliases: if top { aliases(message) } else { Vec::new() },
            indent,
        }
    }

    /// The declarations of `extensions`, at `indent`.
    fn extensions(
        &mut self,
        extensions: impl Iterator<Item = ExtensionDescriptor>,
        indent: &str,
    ) -> Vec<Extension> {
        extensions
            .map(|extension| {
                self.types.imports.require(Helper::Builtins);
                let extended = self.types.message(&extension.containing_message());
                let value = self.types.kind(&extension.kind());
                let value = if extension.is_list() {
                    let container = if matches!(extension.kind(), Kind::Message(_)) {
                        "RepeatedCompositeFieldContainer"
                    } else {
                        "RepeatedScalarFieldContainer"
                    };
                    format!(
                        "{}[{value}]",
                        self.types.helper(Helper::Containers, container)
                    )
                } else {
                    value
                };
                Extension {
                    constant: field_number_constant(extension.name()),
                    declared: !names::is_python_keyword(extension.name()),
                    name: extension.name().to_owned(),
                    ty: format!(
                        "{}[{extended}, {value}]",
                        self.types
                            .helper(Helper::ExtensionDict, "_ExtensionFieldDescriptor")
                    ),
                    doc: self.doc(extension.path(), indent),
                }
            })
            .collect()
    }

    /// The docstring literal for the element at `path`, continued at `indent`.
    pub(super) fn doc(&self, path: &[i32], indent: &str) -> Option<String> {
        let comment = self.comments.get(path).map(comments::python_docstring)?;
        Some(docstring(&comment, indent))
    }

    /// The `@deprecated` argument for the element of `kind` at `path`, if it is
    /// deprecated by its `own` option or by its file's.
    pub(super) fn deprecated(
        &mut self,
        kind: Deprecated,
        path: &[i32],
        own: bool,
    ) -> Option<String> {
        let deprecated =
            deprecation::deprecation(self.comments, kind, path, own, self.file_deprecated);
        if deprecated.is_some() {
            self.types.imports.require(Helper::TypingExtensions);
        }
        deprecated
    }
}

/// The module-level aliases of the top-level class `message`: its own, then one for each
/// deprecated class nested in it (see [`class_alias`]).
fn aliases(message: &MessageDescriptor) -> Vec<Alias> {
    fn add(path: &[String], out: &mut Vec<Alias>) {
        out.push(Alias {
            name: class_alias(path),
            target: path.join("."),
            deprecated: true,
        });
    }
    fn nested(message: &MessageDescriptor, path: &mut Vec<String>, out: &mut Vec<Alias>) {
        for enumeration in message.child_enums() {
            if enum_deprecated(&enumeration) {
                path.push(class_name(enumeration.name()));
                add(path, out);
                path.pop();
            }
        }
        for child in message.child_messages() {
            path.push(class_name(child.name()));
            if message_deprecated(&child) {
                add(path, out);
            }
            nested(&child, path, out);
            path.pop();
        }
    }
    let name = class_name(message.name());
    let mut out = vec![Alias {
        name: global_alias(&name),
        target: name.clone(),
        deprecated: message_deprecated(message),
    }];
    nested(message, &mut vec![name], &mut out);
    out
}

/// `from m import X as X` for each name that `import public` dependencies (and theirs)
/// add to the module, as their stubs declare them.
fn reexports(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Vec<String> {
    let mut lines = Vec::new();
    for public in file.public_dependencies() {
        let module = ctx.module(public.name(), "_pb2");
        if module.split('.').any(names::is_python_keyword) {
            continue;
        }
        let mut exported = BTreeSet::new();
        public_names(&public, &mut exported);
        lines.extend(
            exported
                .into_iter()
                .map(|name| format!("from {module} import {name} as {name}")),
        );
    }
    lines
}

/// The module-level names the stub of `file` declares, with those it re-exports (classes
/// named like keywords as the stub declares them, `_r_<name>`).
fn public_names(file: &FileDescriptor, out: &mut BTreeSet<String>) {
    let declarable = |name: &str| !names::is_python_keyword(name);
    out.extend(file.messages().map(|m| class_name(m.name())));
    for enumeration in file.enums() {
        out.insert(class_name(enumeration.name()));
        out.extend(
            enumeration
                .values()
                .map(|v| v.name().to_owned())
                .filter(|n| declarable(n)),
        );
    }
    out.extend(
        file.extensions()
            .map(|e| e.name().to_owned())
            .filter(|n| declarable(n)),
    );
    for public in file.public_dependencies() {
        public_names(&public, out);
    }
}

/// The module docstring: the comment on `package`, else on `syntax`, as mypy-protobuf
/// chooses. A file's header is usually detached from the statement by a blank line, and
/// `Comments` indexes attached comments only, so the source info is read here.
fn module_doc(file: &FileDescriptor) -> Option<String> {
    const PACKAGE: i32 = 2;
    const SYNTAX: i32 = 12;
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let text = [PACKAGE, SYNTAX].into_iter().find_map(|field| {
        let location = info.location.iter().find(|l| l.path == [field])?;
        location.leading_comments.as_deref().or(location
            .leading_detached_comments
            .last()
            .map(String::as_str))
    })?;
    // Comment lines keep the space after `//`; remove the indentation they share.
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let indent = lines
        .iter()
        .filter(|line| !line.is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()?;
    let text: Vec<&str> = lines
        .iter()
        .map(|line| line.get(indent..).unwrap_or(""))
        .collect();
    Some(docstring(
        &comments::python_docstring(text.join("\n").trim()),
        "",
    ))
}

/// `page_size` -> `PAGE_SIZE_FIELD_NUMBER`.
fn field_number_constant(field: &str) -> String {
    format!("{}_FIELD_NUMBER", field.to_ascii_uppercase())
}
