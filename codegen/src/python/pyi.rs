//! `*_pb2.pyi` and `*_pb2_grpc.pyi`: type stubs as precise as mypy-protobuf's.
//!
//! The stubs describe what the generated modules hold at run time, no more: names that
//! Python cannot spell (keywords) are left out of declarations but kept where the runtime
//! takes them as strings (`HasField`, `ClearField`, `WhichOneof`). Every name, type and
//! import is computed here; the templates only lay the text out.

use std::collections::BTreeSet;

use askama::Template;
use prost_reflect::{
    EnumDescriptor, ExtensionDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, OneofDescriptor,
};
use prost_types::{
    EnumOptions, EnumValueDescriptorProto, EnumValueOptions, FieldOptions, FileOptions,
    MessageOptions, ServiceOptions,
};

use super::PythonContext;
use super::services::{self, Method};
use crate::comments::{self, Comments};
use crate::error::Result;
use crate::names;

/// Renders `*_pb2.pyi` for `file`.
pub(crate) fn render(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Result<String> {
    let comments = Comments::new(file.file_descriptor_proto());
    let mut builder = MessagesBuilder {
        types: TypeNames::new(ctx, Some(file.name())),
        comments: &comments,
        file_deprecated: is_deprecated(
            &file.file_descriptor_proto().options,
            FileOptions::deprecated,
        ),
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
    let reexports = reexports(ctx, file);
    let stub = MessagesStub {
        header: super::HEADER,
        source: file.name(),
        doc: module_doc(file),
        blocks: builder.blocks,
        extensions,
        imports: builder.types.imports.groups(),
        reexports,
    };
    super::render_template("python/pb2.pyi", &stub)
}

/// Renders `*_pb2_grpc.pyi` for `file`.
pub(crate) fn render_grpc(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Result<String> {
    let services = services::services(ctx, file);
    let mut types = TypeNames::new(ctx, None);
    // The template's fixed part: the context and iterator helpers, stubs and servicers.
    for helper in [
        Helper::Abc,
        Helper::CollectionsAbc,
        Helper::Grpc,
        Helper::GrpcAio,
        Helper::Typing,
        Helper::TypingExtensions,
    ] {
        types.imports.require(helper);
    }
    let file_deprecated = is_deprecated(
        &file.file_descriptor_proto().options,
        FileOptions::deprecated,
    );
    let client_streaming = services
        .iter()
        .flat_map(|service| &service.methods)
        .any(|method| method.client_streaming);
    // `services` is built from `file.services()`, in the same order.
    let services: Vec<ServiceStub> = services
        .iter()
        .zip(file.services())
        .map(|(service, descriptor)| {
            let deprecated = if is_deprecated(
                &descriptor.service_descriptor_proto().options,
                ServiceOptions::deprecated,
            ) {
                Some(DEPRECATED_SERVICE)
            } else {
                file_deprecated.then_some(DEPRECATED_FILE)
            };
            let methods = service
                .methods
                .iter()
                .zip(descriptor.methods())
                .map(|(method, descriptor)| {
                    let deprecated = if method.deprecated {
                        Some(DEPRECATED_METHOD)
                    } else {
                        deprecated
                    };
                    method_stub(&mut types, method, &descriptor, deprecated)
                })
                .collect();
            ServiceStub {
                name: service.name.clone(),
                doc: deprecation_note(service.doc.as_deref(), deprecated)
                    .map(|doc| docstring(&doc, "    ")),
                methods,
            }
        })
        .collect();
    let stub = GrpcStub {
        header: super::HEADER,
        source: file.name(),
        client_streaming,
        imports: types.imports.groups(),
        services,
    };
    super::render_template("python/pb2_grpc.pyi", &stub)
}

/// One method of a service, `deprecated` (by itself or by its service or file) or not.
fn method_stub(
    types: &mut TypeNames<'_>,
    method: &Method,
    descriptor: &MethodDescriptor,
    deprecated: Option<&'static str>,
) -> MethodStub {
    if deprecated.is_some() {
        types.imports.require(Helper::Builtins);
    }
    let request = types.message(&descriptor.input());
    let response = types.message(&descriptor.output());
    let callable = match (method.client_streaming, method.server_streaming) {
        (false, false) => "UnaryUnaryMultiCallable",
        (false, true) => "UnaryStreamMultiCallable",
        (true, false) => "StreamUnaryMultiCallable",
        (true, true) => "StreamStreamMultiCallable",
    };
    let (request_param, request_type) = if method.client_streaming {
        (
            "request_iterator",
            format!("_MaybeAsyncIterator[{request}]"),
        )
    } else {
        ("request", request.clone())
    };
    let response_type = if method.server_streaming {
        let iterator = types.helper(Helper::CollectionsAbc, "Iterator");
        let async_iterator = types.helper(Helper::CollectionsAbc, "AsyncIterator");
        format!("{iterator}[{response}] | {async_iterator}[{response}]")
    } else {
        let awaitable = types.helper(Helper::CollectionsAbc, "Awaitable");
        format!("{response} | {awaitable}[{response}]")
    };
    MethodStub {
        attr: method.attr.clone(),
        attr_doc: method.doc.as_deref().map(|doc| docstring(doc, "    ")),
        body_doc: method.doc.as_deref().map(|doc| docstring(doc, "        ")),
        deprecated,
        callable,
        request,
        response,
        request_param,
        request_type,
        response_type,
    }
}

/// Why an element is deprecated, for `@deprecated(...)` on its members (fields, enum
/// values, RPC methods) and a note in the docstrings of classes. Classes themselves are
/// not decorated: a type checker would then flag every annotation naming them, in the
/// stubs themselves.
const DEPRECATED_MESSAGE: &str = "This message is marked deprecated in the .proto file.";
const DEPRECATED_ENUM: &str = "This enum is marked deprecated in the .proto file.";
const DEPRECATED_VALUE: &str = "This enum value is marked deprecated in the .proto file.";
const DEPRECATED_FIELD: &str = "This field is marked deprecated in the .proto file.";
const DEPRECATED_SERVICE: &str = "This service is marked deprecated in the .proto file.";
const DEPRECATED_METHOD: &str = "This method is marked deprecated in the .proto file.";
const DEPRECATED_FILE: &str = "This .proto file is marked deprecated.";

/// Enum value names that the enum type wrapper already uses for its methods; the values
/// stay reachable at module (or message) level.
const ENUM_WRAPPER_METHODS: &[&str] = &["Name", "Value", "keys", "values", "items"];

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
enum Block {
    Enum(EnumClass),
    Open(MessageOpen),
    Close(MessageClose),
    Skipped(Skipped),
}

/// An enum: the `ValueType` holder, the metaclass listing the values, the class itself and
/// the values in the enclosing scope (the module, or the message class).
struct EnumClass {
    indent: String,
    name: String,
    /// `ValueType` as seen from the wrapper, e.g. `_Status.ValueType`.
    helper_value_type: String,
    /// `ValueType` as seen from the enclosing scope, e.g. `Status.ValueType`.
    value_type: String,
    doc: Option<String>,
    /// Values declared on the metaclass (`Status.STATUS_ACTIVE`).
    wrapper_values: Vec<EnumValue>,
    /// Values declared in the enclosing scope (`STATUS_ACTIVE`).
    scope_values: Vec<EnumConstant>,
    /// For top-level enums, the module-level alias other classes use to name it.
    global_alias: Option<String>,
}

/// One enum value on the enum type wrapper.
struct EnumValue {
    name: String,
    number: i32,
    deprecated: Option<&'static str>,
    /// The docstring literal, indented for where it goes (after an attribute, or inside
    /// the property).
    doc: Option<String>,
}

/// One enum value in the enum's enclosing scope, where it cannot carry a decorator.
struct EnumConstant {
    name: String,
    number: i32,
    doc: Option<String>,
}

/// The start of a message class: decorator, `class` line, docstring and `DESCRIPTOR`.
struct MessageOpen {
    indent: String,
    name: String,
    doc: Option<String>,
}

/// The members of a message class, after its nested classes.
struct MessageClose {
    /// The indentation of the members (one level inside the class).
    indent: String,
    /// `<FIELD>_FIELD_NUMBER` for every field.
    field_numbers: Vec<String>,
    fields: Vec<Field>,
    extensions: Vec<Extension>,
    /// The name of `__init__`'s first parameter: `self`, unless a field takes that name.
    init_self: String,
    init_params: Vec<InitParam>,
    /// The type of `HasField`'s and `ClearField`'s argument.
    has_field: String,
    clear_field: String,
    which_oneof: Vec<WhichOneof>,
    /// The class name, and for top-level messages the module-level alias other classes
    /// use to name it.
    name: String,
    global_alias: Option<String>,
}

/// A field attribute.
struct Field {
    name: String,
    ty: String,
    /// Messages, repeated fields and maps cannot be assigned: they are properties.
    read_only: bool,
    deprecated: Option<&'static str>,
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

/// One `WhichOneof` signature.
struct WhichOneof {
    overload: bool,
    argument: String,
    result: String,
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

/// A declaration Python cannot spell, replaced by a comment.
struct Skipped {
    indent: String,
    kind: &'static str,
    name: String,
}

/// `*_pb2_grpc.pyi`.
#[derive(Template)]
#[template(path = "python/pb2_grpc.pyi", escape = "none")]
struct GrpcStub<'a> {
    header: &'a str,
    source: &'a str,
    imports: Vec<Vec<String>>,
    /// Whether any method takes a request stream (and so needs `_MaybeAsyncIterator`).
    client_streaming: bool,
    services: Vec<ServiceStub>,
}

/// One service: its stubs, servicer and registration function.
struct ServiceStub {
    name: String,
    /// The docstring literal for the stub and servicer classes.
    doc: Option<String>,
    methods: Vec<MethodStub>,
}

/// One method, on the stubs and the servicer.
struct MethodStub {
    /// The attribute name, as `_pb2_grpc.py` spells it (keywords get a trailing `_`).
    attr: String,
    /// The docstring literal after the stub attribute and inside the servicer method.
    attr_doc: Option<String>,
    body_doc: Option<String>,
    deprecated: Option<&'static str>,
    /// The multi-callable class, in `grpc` and `grpc.aio` alike.
    callable: &'static str,
    request: String,
    response: String,
    request_param: &'static str,
    /// What the servicer receives: a request, or an iterator usable with `for` and `async for`.
    request_type: String,
    /// What the servicer returns: a response or stream, directly or from a coroutine.
    response_type: String,
}

/// Builds the blocks of a `_pb2.pyi`.
struct MessagesBuilder<'a> {
    types: TypeNames<'a>,
    comments: &'a Comments,
    file_deprecated: bool,
    blocks: Vec<Block>,
}

impl MessagesBuilder<'_> {
    /// Adds `enumeration`, declared at `depth` (0: module level).
    fn enumeration(&mut self, enumeration: &EnumDescriptor, depth: usize) {
        let indent = "    ".repeat(depth);
        let name = enumeration.name().to_owned();
        if names::is_python_keyword(&name) {
            self.blocks.push(Block::Skipped(Skipped {
                indent,
                kind: "enum",
                name,
            }));
            return;
        }
        self.types.imports.require(Helper::Builtins);
        self.types.imports.require(Helper::Typing);
        self.types.imports.require(Helper::TypingExtensions);
        self.types.imports.require(Helper::EnumTypeWrapper);
        // Inside a class, a member may hide the enclosing class's name: name it from the
        // module-level alias. At module level the enum's own name is unambiguous.
        let (helper_value_type, value_type) = match enumeration.parent_message() {
            Some(parent) => (
                format!("{}._{name}.ValueType", self.types.message(&parent)),
                self.types.enum_value_type(enumeration),
            ),
            None => (format!("_{name}.ValueType"), format!("{name}.ValueType")),
        };
        let inner = format!("{indent}    ");
        // In declaration order: the descriptor orders its values by number.
        let values: Vec<(usize, &EnumValueDescriptorProto)> = enumeration
            .enum_descriptor_proto()
            .value
            .iter()
            .enumerate()
            .filter(|(_, value)| !names::is_python_keyword(value.name()))
            .collect();
        // A deprecated enum deprecates its values; module-level constants cannot say so.
        let enum_deprecated = self.deprecation(
            is_deprecated(
                &enumeration.enum_descriptor_proto().options,
                EnumOptions::deprecated,
            ),
            depth,
            DEPRECATED_ENUM,
        );
        let wrapper_values = values
            .iter()
            .filter(|(_, value)| !ENUM_WRAPPER_METHODS.contains(&value.name()))
            .map(|&(i, value)| {
                let deprecated = if is_deprecated(&value.options, EnumValueOptions::deprecated) {
                    Some(DEPRECATED_VALUE)
                } else {
                    enum_deprecated
                };
                let doc_indent = if deprecated.is_some() {
                    format!("{inner}    ")
                } else {
                    inner.clone()
                };
                EnumValue {
                    name: value.name().to_owned(),
                    number: value.number(),
                    deprecated,
                    doc: self.doc(&value_path(enumeration, i), &doc_indent, None),
                }
            })
            .collect();
        let scope_values = values
            .iter()
            .map(|&(i, value)| EnumConstant {
                name: value.name().to_owned(),
                number: value.number(),
                doc: self.doc(&value_path(enumeration, i), &indent, None),
            })
            .collect();
        let class = EnumClass {
            doc: self.doc(enumeration.path(), &inner, enum_deprecated),
            global_alias: (depth == 0).then(|| global_alias(&name)),
            indent,
            name,
            helper_value_type,
            value_type,
            wrapper_values,
            scope_values,
        };
        self.blocks.push(Block::Enum(class));
    }

    /// Adds `message`, its nested classes and members, declared at `depth`.
    fn message(&mut self, message: &MessageDescriptor, depth: usize) {
        let indent = "    ".repeat(depth);
        let name = message.name().to_owned();
        if names::is_python_keyword(&name) {
            self.blocks.push(Block::Skipped(Skipped {
                indent,
                kind: "message",
                name,
            }));
            return;
        }
        self.types.imports.require(Helper::Typing);
        self.types.imports.require(Helper::Message);
        let inner = format!("{indent}    ");
        let deprecated = self.deprecation(
            is_deprecated(
                &message.descriptor_proto().options,
                MessageOptions::deprecated,
            ),
            depth,
            DEPRECATED_MESSAGE,
        );
        let open = MessageOpen {
            doc: self.doc(message.path(), &inner, deprecated),
            indent,
            name,
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
            let deprecated = is_deprecated(
                &field.field_descriptor_proto().options,
                FieldOptions::deprecated,
            )
            .then_some(DEPRECATED_FIELD);
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
                doc: self.doc(field.path(), &doc_indent, None),
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
            .filter(|f| !f.is_list() && !f.is_map() && f.supports_presence())
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
            }]
        } else {
            let overload = oneofs.len() > 1;
            if overload {
                self.types.imports.require(Helper::Typing);
            }
            oneofs
                .iter()
                .map(|oneof| {
                    let members: Vec<String> = oneof
                        .fields()
                        .map(|f| format!("\"{}\"", f.name()))
                        .collect();
                    WhichOneof {
                        overload,
                        argument: self.types.field_names([oneof.name()]),
                        result: format!(
                            "{}[{}] | None",
                            self.types.helper(Helper::Typing, "Literal"),
                            members.join(", ")
                        ),
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
            which_oneof,
            name: message.name().to_owned(),
            global_alias: top.then(|| global_alias(message.name())),
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
                    doc: self.doc(extension.path(), indent, None),
                }
            })
            .collect()
    }

    /// The docstring literal for the element at `path`, continued at `indent`, with a
    /// note if the element is `deprecated`.
    fn doc(&self, path: &[i32], indent: &str, deprecated: Option<&str>) -> Option<String> {
        let comment = self.comments.get(path).map(comments::python_docstring);
        deprecation_note(comment.as_deref(), deprecated).map(|doc| docstring(&doc, indent))
    }

    /// Why a message or enum at `depth` is deprecated, if it is (by itself, or as a
    /// top-level class of a deprecated file).
    fn deprecation(&self, own: bool, depth: usize, text: &'static str) -> Option<&'static str> {
        if own {
            Some(text)
        } else if depth == 0 && self.file_deprecated {
            Some(DEPRECATED_FILE)
        } else {
            None
        }
    }
}

/// The Python types of one field.
struct FieldTypes {
    /// The attribute's type, e.g. `_containers.ScalarMap[_builtins.str, _builtins.int]`.
    attribute: String,
    /// The `__init__` parameter's type, e.g. `_abc.Mapping[...] | None`.
    parameter: String,
    /// Whether the attribute is read-only (messages, repeated fields and maps).
    read_only: bool,
}

/// Spells Python types for one stub and collects the imports they need.
struct TypeNames<'a> {
    ctx: &'a PythonContext<'a>,
    /// The `.proto` file a `_pb2.pyi` describes: its own classes are named through the
    /// module-level aliases. `None` in a `_pb2_grpc.pyi`, which imports every class.
    local_file: Option<&'a str>,
    imports: Imports,
}

impl<'a> TypeNames<'a> {
    fn new(ctx: &'a PythonContext<'a>, local_file: Option<&'a str>) -> Self {
        TypeNames {
            ctx,
            local_file,
            imports: Imports::default(),
        }
    }

    /// `name` from `helper`, e.g. `_typing.Literal`.
    fn helper(&mut self, helper: Helper, name: &str) -> String {
        self.imports.require(helper);
        format!("{}.{name}", helper.alias())
    }

    /// The class of `message`; `_message.Message` if Python cannot name it.
    fn message(&mut self, message: &MessageDescriptor) -> String {
        let file = message.parent_file();
        match self.class(file.name(), message.package_name(), message.full_name()) {
            Some(class) => class,
            None => self.helper(Helper::Message, "Message"),
        }
    }

    /// The value type of `enumeration`; `int` if Python cannot name the enum.
    fn enum_value_type(&mut self, enumeration: &EnumDescriptor) -> String {
        let file = enumeration.parent_file();
        match self.class(
            file.name(),
            enumeration.package_name(),
            enumeration.full_name(),
        ) {
            Some(class) => format!("{class}.ValueType"),
            None => self.helper(Helper::Builtins, "int"),
        }
    }

    /// How this stub spells the class `full_name` of `file`, importing its module if
    /// needed; `None` when a keyword in the class's or module's path makes it unspellable.
    fn class(&mut self, file: &str, package: &str, full_name: &str) -> Option<String> {
        let path = relative_name(package, full_name);
        if path.split('.').any(names::is_python_keyword) {
            return None;
        }
        if self.local_file == Some(file) {
            return Some(global_alias(path));
        }
        let module = self.ctx.module(file, "_pb2");
        if module.split('.').any(names::is_python_keyword) {
            return None;
        }
        let alias = names::python_module_alias(&module);
        self.imports.modules.insert(module);
        Some(format!("{alias}.{path}"))
    }

    /// The type of a single value of `kind`.
    fn kind(&mut self, kind: &Kind) -> String {
        let builtin = match kind {
            Kind::Double | Kind::Float => "float",
            Kind::Int32
            | Kind::Int64
            | Kind::Uint32
            | Kind::Uint64
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Fixed32
            | Kind::Fixed64
            | Kind::Sfixed32
            | Kind::Sfixed64 => "int",
            Kind::Bool => "bool",
            Kind::String => "str",
            Kind::Bytes => "bytes",
            Kind::Message(message) => return self.message(message),
            Kind::Enum(enumeration) => return self.enum_value_type(enumeration),
        };
        self.helper(Helper::Builtins, builtin)
    }

    /// The attribute and `__init__` parameter types of `field`.
    fn field(&mut self, field: &FieldDescriptor) -> FieldTypes {
        let kind = field.kind();
        if let (true, Kind::Message(entry)) = (field.is_map(), &kind) {
            let key = self.kind(&entry.map_entry_key_field().kind());
            let value_kind = entry.map_entry_value_field().kind();
            let value = self.kind(&value_kind);
            let container = match value_kind {
                Kind::Message(_) => "MessageMap",
                _ => "ScalarMap",
            };
            return FieldTypes {
                attribute: format!(
                    "{}[{key}, {value}]",
                    self.helper(Helper::Containers, container)
                ),
                parameter: format!(
                    "{}[{key}, {value}] | None",
                    self.helper(Helper::CollectionsAbc, "Mapping")
                ),
                read_only: true,
            };
        }
        let value = self.kind(&kind);
        if field.is_list() {
            let container = match kind {
                Kind::Message(_) => "RepeatedCompositeFieldContainer",
                _ => "RepeatedScalarFieldContainer",
            };
            return FieldTypes {
                attribute: format!("{}[{value}]", self.helper(Helper::Containers, container)),
                parameter: format!(
                    "{}[{value}] | None",
                    self.helper(Helper::CollectionsAbc, "Iterable")
                ),
                read_only: true,
            };
        }
        FieldTypes {
            // Fields without presence take their default for `None`, but a value is
            // what the caller means: they are typed as strictly as mypy-protobuf does.
            parameter: if field.supports_presence() {
                format!("{value} | None")
            } else {
                value.clone()
            },
            attribute: value,
            read_only: matches!(kind, Kind::Message(_)),
        }
    }

    /// The type of an argument naming one of `names` (as `str` or `bytes`), sorted;
    /// `Never` if there are none.
    fn field_names<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) -> String {
        let names: BTreeSet<&str> = names.into_iter().collect();
        if names.is_empty() {
            return self.helper(Helper::TypingExtensions, "Never");
        }
        let literals: Vec<String> = names
            .iter()
            .map(|name| format!("\"{name}\", b\"{name}\""))
            .collect();
        format!(
            "{}[{}]",
            self.helper(Helper::Typing, "Literal"),
            literals.join(", ")
        )
    }
}

/// A module of the Python standard library or of the protobuf and grpc runtimes, always
/// imported under the same private alias. Ordered as the import statements are sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Helper {
    Builtins,
    Grpc,
    Typing,
    TypingExtensions,
    Abc,
    CollectionsAbc,
    Descriptor,
    Message,
    Containers,
    EnumTypeWrapper,
    ExtensionDict,
    GrpcAio,
}

impl Helper {
    /// The import statement.
    fn statement(self) -> &'static str {
        match self {
            Helper::Builtins => "import builtins as _builtins",
            Helper::Grpc => "import grpc as _grpc",
            Helper::Typing => "import typing as _typing",
            Helper::TypingExtensions => "import typing_extensions as _typing_extensions",
            Helper::Abc => "from abc import ABCMeta as _ABCMeta, abstractmethod as _abstractmethod",
            Helper::CollectionsAbc => "from collections import abc as _abc",
            Helper::Descriptor => "from google.protobuf import descriptor as _descriptor",
            Helper::Message => "from google.protobuf import message as _message",
            Helper::Containers => "from google.protobuf.internal import containers as _containers",
            Helper::EnumTypeWrapper => {
                "from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper"
            }
            Helper::ExtensionDict => {
                "from google.protobuf.internal import extension_dict as _extension_dict"
            }
            Helper::GrpcAio => "from grpc import aio as _aio",
        }
    }

    /// The name the module is imported as (the `abc` helper imports two names instead).
    fn alias(self) -> &'static str {
        self.statement().rsplit(' ').next().unwrap_or_default()
    }
}

/// The imports of one stub.
#[derive(Default)]
struct Imports {
    helpers: BTreeSet<Helper>,
    /// Modules of `.proto` files, e.g. `fixtures.common.v1.common_pb2`.
    modules: BTreeSet<String>,
}

impl Imports {
    fn require(&mut self, helper: Helper) {
        self.helpers.insert(helper);
    }

    /// The import statements: helpers, then `.proto` modules under protoc's aliases.
    fn groups(&self) -> Vec<Vec<String>> {
        let helpers = self
            .helpers
            .iter()
            .map(|h| h.statement().to_owned())
            .collect();
        let modules: Vec<String> = self
            .modules
            .iter()
            .map(|module| {
                let alias = names::python_module_alias(module);
                match module.rsplit_once('.') {
                    Some((parent, leaf)) => format!("from {parent} import {leaf} as {alias}"),
                    None => format!("import {module} as {alias}"),
                }
            })
            .collect();
        [helpers, modules]
            .into_iter()
            .filter(|group: &Vec<String>| !group.is_empty())
            .collect()
    }
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

/// The module-level names the stub of `file` declares, with those it re-exports.
fn public_names(file: &FileDescriptor, out: &mut BTreeSet<String>) {
    let declarable = |name: &str| !names::is_python_keyword(name);
    out.extend(
        file.messages()
            .map(|m| m.name().to_owned())
            .filter(|n| declarable(n)),
    );
    for enumeration in file.enums().filter(|e| declarable(e.name())) {
        out.insert(enumeration.name().to_owned());
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

/// A docstring literal for `escaped` (already made safe by `comments::python_docstring`).
/// Several lines continue at `indent` and close on a line of their own.
fn docstring(escaped: &str, indent: &str) -> String {
    if !escaped.contains('\n') {
        return format!("\"\"\"{escaped}\"\"\"");
    }
    let mut literal = String::from("\"\"\"");
    for (i, line) in escaped.lines().enumerate() {
        if i > 0 {
            literal.push('\n');
            if !line.is_empty() {
                literal.push_str(indent);
            }
        }
        literal.push_str(line);
    }
    literal.push('\n');
    literal.push_str(indent);
    literal.push_str("\"\"\"");
    literal
}

/// The module-level alias of a top-level class, by which nested scopes name it even
/// where a member of the same name hides the class (`Kitchen.Shelf` ->
/// `_Global_Kitchen.Shelf`).
fn global_alias(path: &str) -> String {
    format!("_Global_{path}")
}

/// The source-info path of the `index`-th value of `enumeration`.
fn value_path(enumeration: &EnumDescriptor, index: usize) -> Vec<i32> {
    const ENUM_VALUE: i32 = 2;
    comments::path::child(enumeration.path(), ENUM_VALUE, index)
}

/// `page_size` -> `PAGE_SIZE_FIELD_NUMBER`.
fn field_number_constant(field: &str) -> String {
    format!("{}_FIELD_NUMBER", field.to_ascii_uppercase())
}

/// `Outer.Inner` for `pkg.Outer.Inner` in package `pkg`.
fn relative_name<'n>(package: &str, full_name: &'n str) -> &'n str {
    if package.is_empty() {
        return full_name;
    }
    full_name
        .strip_prefix(package)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(full_name)
}

/// Whether `options` (of any kind of element) say `deprecated = true`.
fn is_deprecated<O>(options: &Option<O>, deprecated: fn(&O) -> bool) -> bool {
    options.as_ref().is_some_and(deprecated)
}

/// `doc` (escaped) with a deprecation note first if `deprecated` says why.
fn deprecation_note(doc: Option<&str>, deprecated: Option<&str>) -> Option<String> {
    match (doc, deprecated) {
        (Some(doc), Some(why)) => Some(format!("Deprecated: {why}\n\n{doc}")),
        (None, Some(why)) => Some(format!("Deprecated: {why}")),
        (doc, None) => doc.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Generates the Python files for one `.proto` source named `test.proto`.
    fn generate(source: &str) -> BTreeMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test.proto"), source).unwrap();
        crate::configure()
            .include(dir.path())
            .rust(false)
            .python(true)
            .generate(&["test.proto"])
            .unwrap()
            .python
    }

    #[test]
    fn docstrings_continue_at_the_indentation() {
        assert_eq!(docstring("One line.", "    "), "\"\"\"One line.\"\"\"");
        assert_eq!(
            docstring("First.\n\nSecond.", "    "),
            "\"\"\"First.\n\n    Second.\n    \"\"\""
        );
        assert_eq!(
            deprecation_note(Some("Doc."), Some("Why.")).as_deref(),
            Some("Deprecated: Why.\n\nDoc.")
        );
    }

    #[test]
    fn names_are_relative_to_the_package() {
        assert_eq!(relative_name("a.b", "a.b.Outer.Inner"), "Outer.Inner");
        assert_eq!(relative_name("", "Outer"), "Outer");
        assert_eq!(global_alias("Outer.Inner"), "_Global_Outer.Inner");
    }

    #[test]
    fn keywords_are_left_out_of_declarations_only() {
        let files = generate(
            "syntax = \"proto3\";\npackage p;\n\
             message None { string x = 1; }\n\
             message Holder { None none = 1; string from = 2; string self = 3; }\n\
             service S { rpc async(Holder) returns (None); }\n",
        );
        let stub = &files["test_pb2.pyi"];
        assert!(
            stub.contains("# The message `None` is not declared"),
            "{stub}"
        );
        assert!(
            stub.contains("def none(self) -> _message.Message: ..."),
            "{stub}"
        );
        assert!(!stub.contains("from: "), "{stub}");
        assert!(stub.contains("self_,  # pyright: ignore"), "{stub}");
        assert!(stub.contains("\"from\", b\"from\""), "{stub}");
        let grpc = &files["test_pb2_grpc.pyi"];
        assert!(
            grpc.contains(
                "async_: _grpc.UnaryUnaryMultiCallable[test__pb2.Holder, _message.Message]"
            ),
            "{grpc}"
        );
    }
}
