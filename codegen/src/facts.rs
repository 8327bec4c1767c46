//! Facts a schema attaches to enum values with the custom options of
//! `ml_bridge_options.proto` (error kinds and their gRPC codes, short names, item sizes),
//! read into a typed model that the Rust and Python emitters lay out.
//!
//! Only top-level enums are read. A file that does not import `ml_bridge_options.proto`
//! (directly or not) has no facts, and nothing extra is generated for it.

use heck::{ToShoutySnakeCase, ToUpperCamelCase};
use prost_reflect::{
    DescriptorPool, EnumDescriptor, ExtensionDescriptor, FileDescriptor, Value as OptionValue,
};

use crate::comments::{self, Comments};
use crate::error::{Error, Result};

/// The package that declares the options.
const OPTIONS_PACKAGE: &str = "mlbridge.options";

/// The facts of one enum.
#[derive(Debug, Clone)]
pub(crate) struct FactEnum {
    /// The proto name, e.g. `ErrorKind`.
    pub name: String,
    /// The enum's name in SCREAMING_SNAKE_CASE, which prefixes its values and names its
    /// tables (`ERROR_KIND`).
    pub shouty: String,
    pub doc: Option<String>,
    /// `Some(base class)` when the enum is a set of error kinds.
    pub error_base: Option<String>,
    /// Whether the values have short names (`name()` / `from_name()`).
    pub named: bool,
    /// Whether the values have item sizes (`item_size()`).
    pub sized: bool,
    pub values: Vec<FactValue>,
}

/// The facts of one enum value.
#[derive(Debug, Clone)]
pub(crate) struct FactValue {
    /// The value name without the enum's prefix (`VARIABLE_NOT_FOUND`), as the Python enum
    /// member and (in UpperCamelCase) the Rust variant are named.
    pub member: String,
    /// prost's Rust variant name (`VariableNotFound`).
    pub variant: String,
    pub number: i32,
    pub doc: Option<String>,
    /// The gRPC status code name (`NOT_FOUND`), for error kinds.
    pub grpc_code: Option<String>,
    pub retryable: bool,
    /// The exception class name, for error kinds.
    pub exception: String,
    /// The short name (`float32`).
    pub short_name: String,
    pub item_size: Option<u32>,
}

impl FactValue {
    /// Whether this is proto3's "not set" value, which is never parsed from a name.
    pub(crate) fn is_unset(&self) -> bool {
        self.number == 0
    }

    /// The gRPC code as tonic spells it (`NotFound`).
    pub(crate) fn tonic_code(&self) -> Option<String> {
        self.grpc_code.as_deref().map(|code| match code {
            // tonic's one variant that is not the code's UpperCamelCase.
            "OK" => "Ok".to_owned(),
            code => code.to_upper_camel_case(),
        })
    }
}

/// The options' extension descriptors, when the pool knows them.
struct Options {
    error_base: ExtensionDescriptor,
    grpc_code: ExtensionDescriptor,
    retryable: ExtensionDescriptor,
    exception: ExtensionDescriptor,
    short_name: ExtensionDescriptor,
    item_size: ExtensionDescriptor,
}

impl Options {
    fn find(pool: &DescriptorPool) -> Option<Self> {
        let get = |name: &str| pool.get_extension_by_name(&format!("{OPTIONS_PACKAGE}.{name}"));
        Some(Options {
            error_base: get("error_base")?,
            grpc_code: get("grpc_code")?,
            retryable: get("retryable")?,
            exception: get("exception")?,
            short_name: get("short_name")?,
            item_size: get("item_size")?,
        })
    }
}

/// The enums of `file` that carry facts, in declaration order.
pub(crate) fn file_facts(file: &FileDescriptor) -> Result<Vec<FactEnum>> {
    let Some(options) = Options::find(file.parent_pool()) else {
        return Ok(Vec::new());
    };
    let comments = Comments::new(file.file_descriptor_proto());
    let mut enums = Vec::new();
    for (index, descriptor) in file.enums().enumerate() {
        let path = vec![5, index as i32];
        if let Some(facts) = enum_facts(&options, &descriptor, &comments, &path)? {
            enums.push(facts);
        }
    }
    Ok(enums)
}

/// The position of `value` in its enum as written in the file (what comment paths count),
/// which is not `values()`'s order when values are not declared in number order.
fn declared(
    descriptor: &EnumDescriptor,
    value: &prost_reflect::EnumValueDescriptor,
    fallback: usize,
) -> usize {
    descriptor
        .enum_descriptor_proto()
        .value
        .iter()
        .position(|declared| declared.name() == value.name())
        .unwrap_or(fallback)
}

fn enum_facts(
    options: &Options,
    descriptor: &EnumDescriptor,
    comments: &Comments,
    path: &[i32],
) -> Result<Option<FactEnum>> {
    let name = descriptor.name().to_owned();
    let shouty = name.to_shouty_snake_case();
    let prefix = format!("{shouty}_");
    let error_base = string_option(&descriptor.options(), &options.error_base);
    let mut values = Vec::new();
    for (index, value) in descriptor.values().enumerate() {
        let opts = value.options();
        let member = value
            .name()
            .strip_prefix(&prefix)
            .unwrap_or(value.name())
            .to_owned();
        let grpc_code = opts
            .has_extension(&options.grpc_code)
            .then(|| match opts.get_extension(&options.grpc_code).as_ref() {
                OptionValue::EnumNumber(number) => options
                    .grpc_code
                    .kind()
                    .as_enum()
                    .and_then(|codes| codes.get_value(*number))
                    .map(|code| code.name().to_owned()),
                _ => None,
            })
            .flatten();
        let item_size = opts
            .has_extension(&options.item_size)
            .then(|| opts.get_extension(&options.item_size).as_u32())
            .flatten();
        values.push(FactValue {
            variant: member.to_upper_camel_case(),
            exception: string_option(&opts, &options.exception)
                .unwrap_or_else(|| member.to_upper_camel_case()),
            short_name: string_option(&opts, &options.short_name)
                .unwrap_or_else(|| member.to_lowercase()),
            retryable: opts.has_extension(&options.retryable)
                && opts.get_extension(&options.retryable).as_bool() == Some(true),
            doc: comments
                .get(&comments::path::child(
                    path,
                    2,
                    declared(descriptor, &value, index),
                ))
                .map(str::to_owned),
            number: value.number(),
            grpc_code,
            item_size,
            member,
        });
    }
    let named = descriptor
        .values()
        .any(|value| value.options().has_extension(&options.short_name));
    let sized = values.iter().any(|value| value.item_size.is_some());
    if error_base.is_none() && !named && !sized {
        if let Some(value) = values.iter().find(|v| v.grpc_code.is_some()) {
            return Err(invalid(
                &name,
                &value.member,
                "has `grpc_code` but the enum has no `(mlbridge.options.error_base)`",
            ));
        }
        return Ok(None);
    }
    for value in &values {
        if error_base.is_some() && value.grpc_code.is_none() {
            return Err(invalid(
                &name,
                &value.member,
                "needs `(mlbridge.options.grpc_code)`: every value of an enum with `error_base` does",
            ));
        }
        if value.grpc_code.as_deref() == Some("OK") {
            return Err(invalid(&name, &value.member, "`grpc_code` cannot be OK"));
        }
        if !value.is_unset() && named && !value_has(descriptor, value, &options.short_name) {
            return Err(invalid(
                &name,
                &value.member,
                "needs `(mlbridge.options.short_name)`: the enum's other values have one",
            ));
        }
        if !value.is_unset() && sized && value.item_size.is_none() {
            return Err(invalid(
                &name,
                &value.member,
                "needs `(mlbridge.options.item_size)`: the enum's other values have one",
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for value in values.iter().filter(|value| !value.is_unset()) {
        if named && !seen.insert(value.short_name.as_str()) {
            return Err(invalid(
                &name,
                &value.member,
                &format!("short name `{}` is used twice", value.short_name),
            ));
        }
    }
    let doc = comments.get(path).map(str::to_owned);
    Ok(Some(FactEnum {
        name,
        shouty,
        doc,
        error_base,
        named,
        sized,
        values,
    }))
}

fn value_has(
    descriptor: &EnumDescriptor,
    value: &FactValue,
    extension: &ExtensionDescriptor,
) -> bool {
    descriptor
        .get_value(value.number)
        .is_some_and(|v| v.options().has_extension(extension))
}

fn string_option(
    options: &prost_reflect::DynamicMessage,
    extension: &ExtensionDescriptor,
) -> Option<String> {
    if !options.has_extension(extension) {
        return None;
    }
    options
        .get_extension(extension)
        .as_str()
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

fn invalid(enum_name: &str, member: &str, reason: &str) -> Error {
    Error::Proto(format!("enum `{enum_name}` value `{member}`: {reason}"))
}
