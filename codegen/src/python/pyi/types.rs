//! Python type expressions for stubs (`_builtins.int`, `_containers.ScalarMap[...]`,
//! classes of other `_pb2` modules) and the imports they need.

use std::collections::BTreeSet;

use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};

use super::deprecation::{enum_deprecated, message_deprecated};
use super::{class_alias, class_name, global_alias};
use crate::names;
use crate::python::PythonContext;

/// The Python types of one field.
pub(super) struct FieldTypes {
    /// The attribute's type, e.g. `_containers.ScalarMap[_builtins.str, _builtins.int]`.
    pub(super) attribute: String,
    /// The `__init__` parameter's type, e.g. `_abc.Mapping[...] | None`.
    pub(super) parameter: String,
    /// Whether the attribute is read-only (messages, repeated fields and maps).
    pub(super) read_only: bool,
}

/// Spells Python types for one stub and collects the imports they need.
pub(super) struct TypeNames<'a> {
    ctx: &'a PythonContext<'a>,
    /// The `.proto` file a `_pb2.pyi` describes: its own classes are named through the
    /// module-level aliases. `None` in a `_pb2_grpc.pyi`, which imports every class.
    local_file: Option<&'a str>,
    pub(super) imports: Imports,
    /// Field options that could not be followed, e.g. a malformed `casttype`.
    pub(super) errors: Vec<String>,
}

impl<'a> TypeNames<'a> {
    pub(super) fn new(ctx: &'a PythonContext<'a>, local_file: Option<&'a str>) -> Self {
        TypeNames {
            ctx,
            local_file,
            imports: Imports::default(),
            errors: Vec::new(),
        }
    }

    /// `name` from `helper`, e.g. `_typing.Literal`.
    pub(super) fn helper(&mut self, helper: Helper, name: &str) -> String {
        self.imports.require(helper);
        format!("{}.{name}", helper.alias())
    }

    /// The class of `message`; `_message.Message` if Python cannot name it.
    pub(super) fn message(&mut self, message: &MessageDescriptor) -> String {
        let file = message.parent_file();
        match self.class(file.name(), &lineage(Some(message.clone()))) {
            Some(class) => class,
            None => self.helper(Helper::Message, "Message"),
        }
    }

    /// The value type of `enumeration`; `int` if Python cannot name the enum.
    pub(super) fn enum_value_type(&mut self, enumeration: &EnumDescriptor) -> String {
        let file = enumeration.parent_file();
        let mut classes = lineage(enumeration.parent_message());
        classes.push((class_name(enumeration.name()), enum_deprecated(enumeration)));
        match self.class(file.name(), &classes) {
            Some(class) => format!("{class}.ValueType"),
            None => self.helper(Helper::Builtins, "int"),
        }
    }

    /// How this stub spells the class at the end of `classes` (from the top level down,
    /// each with whether it is deprecated), importing its module if needed; `None` when
    /// a keyword in the module's path makes it unspellable. The path starts from the
    /// alias of the innermost deprecated class, if any (see [`class_alias`]).
    fn class(&mut self, file: &str, classes: &[(String, bool)]) -> Option<String> {
        let names: Vec<&str> = classes.iter().map(|(name, _)| name.as_str()).collect();
        let local = self.local_file == Some(file);
        let (head, rest) = match classes.iter().rposition(|(_, deprecated)| *deprecated) {
            Some(last) => (class_alias(&names[..=last]), &names[last + 1..]),
            None if local => (global_alias(names[0]), &names[1..]),
            None => (names[0].to_owned(), &names[1..]),
        };
        let path: String = std::iter::once(head.as_str())
            .chain(rest.iter().copied())
            .collect::<Vec<_>>()
            .join(".");
        if local {
            return Some(path);
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
    pub(super) fn kind(&mut self, kind: &Kind) -> String {
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

    /// Whether `field` tracks presence (`HasField`; `None` accepted by `__init__`): as its
    /// syntax says, or in a file written in an edition, as its features say.
    pub(super) fn has_presence(&self, field: &FieldDescriptor) -> bool {
        let file = field.parent_file();
        if self.ctx.set.as_written().edition(file.name()).is_some() {
            crate::editions::has_presence(field)
        } else {
            field.supports_presence()
        }
    }

    /// The type mypy-protobuf's field option `option` (`casttype`, `keytype` or
    /// `valuetype`) names for `field`, if it names one: `path/to/module.Type`.
    fn cast(&mut self, field: &FieldDescriptor, option: &str) -> Option<String> {
        let spec = cast_option(field, option)?;
        let python_name =
            |part: &str| names::is_identifier(part) && !names::is_python_keyword(part);
        let Some((module, name)) = spec
            .split_once('.')
            .filter(|(module, name)| python_name(name) && module.split('/').all(python_name))
        else {
            self.errors.push(format!(
                "field `{}`: (mypy_protobuf.options).{option} `{spec}` is not like `path/to/module.TypeName` (Python names, no keywords)",
                field.full_name()
            ));
            return None;
        };
        let module = module.replace('/', ".");
        let alias = names::python_module_alias(&module);
        self.imports.modules.insert(module);
        Some(format!("{alias}.{name}"))
    }

    /// The attribute and `__init__` parameter types of `field`.
    pub(super) fn field(&mut self, field: &FieldDescriptor) -> FieldTypes {
        let kind = field.kind();
        if let (true, Kind::Message(entry)) = (field.is_map(), &kind) {
            let key = match self.cast(field, "keytype") {
                Some(cast) => cast,
                None => self.kind(&entry.map_entry_key_field().kind()),
            };
            let value_kind = entry.map_entry_value_field().kind();
            let value = match self.cast(field, "valuetype") {
                Some(cast) => cast,
                None => self.kind(&value_kind),
            };
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
        let value = match self.cast(field, "casttype") {
            Some(cast) => cast,
            None => self.kind(&kind),
        };
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
            parameter: if self.has_presence(field) {
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
    pub(super) fn field_names<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) -> String {
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
pub(super) enum Helper {
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
pub(super) struct Imports {
    helpers: BTreeSet<Helper>,
    /// Modules of `.proto` files, e.g. `fixtures.common.v1.common_pb2`.
    modules: BTreeSet<String>,
}

impl Imports {
    pub(super) fn require(&mut self, helper: Helper) {
        self.helpers.insert(helper);
    }

    /// The import statements: helpers, then `.proto` modules under protoc's aliases.
    pub(super) fn groups(&self) -> Vec<Vec<String>> {
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

/// The value of mypy-protobuf's field option `(mypy_protobuf.options).<option>`, else of
/// its older spelling `(mypy_protobuf.<option>)`, if set on `field` and the extension is
/// among the imports.
fn cast_option(field: &FieldDescriptor, option: &str) -> Option<String> {
    let pool = field.parent_pool();
    let options: DynamicMessage = field.options();
    let text = |value: &Value| value.as_str().filter(|t| !t.is_empty()).map(str::to_owned);
    let current = pool
        .get_extension_by_name("mypy_protobuf.options")
        .filter(|extension| options.has_extension(extension))
        .and_then(|extension| {
            let value = options.get_extension(&extension);
            let message = value.as_message()?;
            text(message.get_field_by_name(option)?.as_ref())
        });
    current.or_else(|| {
        let legacy = pool.get_extension_by_name(&format!("mypy_protobuf.{option}"))?;
        options
            .has_extension(&legacy)
            .then(|| text(&options.get_extension(&legacy)))
            .flatten()
    })
}

/// The classes from the top level down to `message` (none for `None`): their Python
/// names, and whether each is deprecated.
pub(super) fn lineage(message: Option<MessageDescriptor>) -> Vec<(String, bool)> {
    let mut classes = Vec::new();
    let mut next = message;
    while let Some(message) = next {
        classes.push((class_name(message.name()), message_deprecated(&message)));
        next = message.parent_message();
    }
    classes.reverse();
    classes
}
