//! Enum classes in `*_pb2.pyi`: the `ValueType` holder, the enum type wrapper listing the
//! values, and the values in the enclosing scope.

use prost_reflect::EnumDescriptor;
use prost_types::{EnumOptions, EnumValueDescriptorProto, EnumValueOptions};

use super::deprecation::{Kind as Deprecated, enum_deprecated, is_deprecated};
use super::messages::{Block, MessagesBuilder};
use super::types::Helper;
use super::{Alias, class_name, global_alias};
use crate::comments;
use crate::names;

/// Enum value names that the enum type wrapper already uses for its methods; the values
/// stay reachable at module (or message) level.
const ENUM_WRAPPER_METHODS: &[&str] = &["Name", "Value", "keys", "values", "items"];

/// An enum: the `ValueType` holder, the metaclass listing the values, the class itself and
/// the values in the enclosing scope (the module, or the message class).
pub(super) struct EnumClass {
    pub(super) indent: String,
    /// The class holding `ValueType` (`_Status`), also the prefix of the wrapper's name.
    pub(super) holder: String,
    /// The enum class (`Status`; `_r_<name>` for a keyword).
    pub(super) name: String,
    /// The `@deprecated` argument, if the class is deprecated.
    pub(super) deprecated: Option<String>,
    /// `ValueType` as seen from the wrapper, e.g. `_Status.ValueType`.
    pub(super) helper_value_type: String,
    /// `ValueType` as seen from the enclosing scope, e.g. `Status.ValueType`.
    pub(super) value_type: String,
    pub(super) doc: Option<String>,
    /// Values declared on the metaclass (`Status.STATUS_ACTIVE`).
    pub(super) wrapper_values: Vec<EnumValue>,
    /// Values declared in the enclosing scope (`STATUS_ACTIVE`).
    pub(super) scope_values: Vec<EnumConstant>,
    /// For top-level enums, the module-level alias other classes use to name it.
    pub(super) aliases: Vec<Alias>,
}

/// One enum value on the enum type wrapper.
pub(super) struct EnumValue {
    pub(super) name: String,
    pub(super) number: i32,
    /// The `@deprecated` argument, if the value is deprecated.
    pub(super) deprecated: Option<String>,
    /// The docstring literal, indented for where it goes (after an attribute, or inside
    /// the property).
    pub(super) doc: Option<String>,
}

/// One enum value in the enum's enclosing scope, where it cannot carry a decorator.
pub(super) struct EnumConstant {
    pub(super) name: String,
    pub(super) number: i32,
    pub(super) doc: Option<String>,
}

impl MessagesBuilder<'_> {
    /// Adds `enumeration`, declared at `depth` (0: module level).
    pub(super) fn enumeration(&mut self, enumeration: &EnumDescriptor, depth: usize) {
        let indent = "    ".repeat(depth);
        let holder = format!("_{}", enumeration.name());
        let name = class_name(enumeration.name());
        self.types.imports.require(Helper::Builtins);
        self.types.imports.require(Helper::Typing);
        self.types.imports.require(Helper::TypingExtensions);
        self.types.imports.require(Helper::EnumTypeWrapper);
        // Inside a class, a member may hide the enclosing class's name: name it from the
        // module-level alias. At module level the enum's own name is unambiguous; the
        // holder's names the same type without naming a deprecated class.
        let (helper_value_type, value_type) = match enumeration.parent_message() {
            Some(parent) => (
                format!("{}.{holder}.ValueType", self.types.message(&parent)),
                self.types.enum_value_type(enumeration),
            ),
            None if enum_deprecated(enumeration) => {
                (format!("{holder}.ValueType"), format!("{holder}.ValueType"))
            }
            None => (format!("{holder}.ValueType"), format!("{name}.ValueType")),
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
        let own = is_deprecated(
            &enumeration.enum_descriptor_proto().options,
            EnumOptions::deprecated,
        );
        let deprecated = self.deprecated(Deprecated::Enum, enumeration.path(), own);
        // Each value says whether it is deprecated (module-level constants cannot say so).
        let wrapper_values = values
            .iter()
            .filter(|(_, value)| !ENUM_WRAPPER_METHODS.contains(&value.name()))
            .map(|&(i, value)| {
                let own = is_deprecated(&value.options, EnumValueOptions::deprecated);
                let deprecated =
                    self.deprecated(Deprecated::EnumValue, &value_path(enumeration, i), own);
                let doc_indent = if deprecated.is_some() {
                    format!("{inner}    ")
                } else {
                    inner.clone()
                };
                EnumValue {
                    name: value.name().to_owned(),
                    number: value.number(),
                    deprecated,
                    doc: self.doc(&value_path(enumeration, i), &doc_indent),
                }
            })
            .collect();
        let scope_values = values
            .iter()
            .map(|&(i, value)| EnumConstant {
                name: value.name().to_owned(),
                number: value.number(),
                doc: self.doc(&value_path(enumeration, i), &indent),
            })
            .collect();
        let aliases = if depth == 0 {
            vec![Alias {
                name: global_alias(&name),
                target: name.clone(),
                deprecated: enum_deprecated(enumeration),
            }]
        } else {
            Vec::new()
        };
        let class = EnumClass {
            doc: self.doc(enumeration.path(), &inner),
            aliases,
            deprecated,
            indent,
            holder,
            name,
            helper_value_type,
            value_type,
            wrapper_values,
            scope_values,
        };
        self.blocks.push(Block::Enum(class));
    }
}

/// The source-info path of the `index`-th value of `enumeration`.
fn value_path(enumeration: &EnumDescriptor, index: usize) -> Vec<i32> {
    const ENUM_VALUE: i32 = 2;
    comments::path::child(enumeration.path(), ENUM_VALUE, index)
}
