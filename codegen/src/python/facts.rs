//! `*_facts.py`: the Python side of the enum facts a file declares with
//! `ml_bridge_options.proto` (see [`crate::facts`]): for an enum of error kinds, an
//! `IntEnum`, the exception base class and one subclass per kind, and the kind -> class
//! and kind -> gRPC code tables; for an enum of named values, a `str`-valued enum with its
//! wire numbers and item sizes.

use askama::Template;
use prost_reflect::FileDescriptor;

use super::PythonContext;
use crate::comments::python_docstring;
use crate::error::Result;
use crate::facts::{self, FactEnum, FactValue};

#[derive(Template)]
#[template(path = "python/facts.py", escape = "none")]
struct FactsModule<'a> {
    header: &'a str,
    source: &'a str,
    summary: String,
    pb2_import: String,
    exports: Vec<String>,
    errors: Vec<ErrorEnum>,
    named: Vec<NamedEnum>,
}

struct ErrorEnum {
    name: String,
    shouty: String,
    doc: String,
    base: String,
    /// The member of the zero value.
    unset: String,
    values: Vec<Value>,
}

struct NamedEnum {
    name: String,
    shouty: String,
    doc: String,
    sized: bool,
    /// A member and its short name, for the docstring's example.
    example: String,
    example_member: String,
    /// The values with a name to parse (not the zero value).
    values: Vec<Value>,
}

struct Value {
    member: String,
    number: i32,
    doc: String,
    exception: String,
    grpc_code: String,
    retryable: bool,
    short_name: String,
    item_size: u32,
}

impl Value {
    fn new(value: &FactValue) -> Self {
        Value {
            member: value.member.clone(),
            number: value.number,
            doc: docstring(value.doc.as_deref(), &value.member),
            exception: value.exception.clone(),
            grpc_code: value.grpc_code.clone().unwrap_or_default(),
            retryable: value.retryable,
            short_name: value.short_name.clone(),
            item_size: value.item_size.unwrap_or_default(),
        }
    }
}

/// A class docstring literal, indented for a class body: one line closes on its line, more
/// lines close on their own.
fn docstring(doc: Option<&str>, fallback: &str) -> String {
    let body = python_docstring(doc.unwrap_or(fallback).trim_end());
    if body.contains('\n') {
        format!(
            "\"\"\"{}\n    \"\"\"",
            body.replace('\n', "\n    ").replace("    \n", "\n")
        )
    } else {
        format!("\"\"\"{body}\"\"\"")
    }
}

/// The path of `file`'s facts module, when it declares any facts.
pub(crate) fn render(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Result<Option<String>> {
    let enums = facts::file_facts(file)?;
    if enums.is_empty() {
        return Ok(None);
    }
    let (errors, named): (Vec<&FactEnum>, Vec<&FactEnum>) =
        enums.iter().partition(|facts| facts.error_base.is_some());
    let errors: Vec<ErrorEnum> = errors.into_iter().map(error_enum).collect();
    let named: Vec<NamedEnum> = named.into_iter().map(named_enum).collect();

    let mut exports = Vec::new();
    let mut summary = Vec::new();
    for e in &errors {
        summary.push(format!(
            "`{}` with its gRPC codes and one exception class per kind under `{}`",
            e.name, e.base
        ));
        exports.extend([e.name.clone(), e.base.clone()]);
        exports.extend(e.values.iter().map(|v| v.exception.clone()));
        exports.extend([
            format!("{}_CLASSES", e.shouty),
            format!("{}_GRPC_CODES", e.shouty),
        ]);
    }
    for n in &named {
        summary.push(if n.sized {
            format!("the names and item sizes of `{}`", n.name)
        } else {
            format!("the names of `{}`", n.name)
        });
        exports.push(n.name.clone());
        if n.sized {
            exports.push(format!("{}_ITEM_SIZES", n.shouty));
        }
    }
    exports.sort();
    exports.dedup();

    let module = ctx.module(file.name(), "_pb2");
    let pb2_import = match module.rsplit_once('.') {
        Some((parent, leaf)) => format!("from {parent} import {leaf} as _pb2"),
        None => format!("import {module} as _pb2"),
    };
    let template = FactsModule {
        header: super::HEADER,
        source: file.name(),
        summary: summary.join("; "),
        pb2_import,
        exports,
        errors,
        named,
    };
    super::render_template("python/facts.py", &template).map(Some)
}

fn error_enum(facts: &FactEnum) -> ErrorEnum {
    ErrorEnum {
        name: facts.name.clone(),
        shouty: facts.shouty.clone(),
        doc: docstring(facts.doc.as_deref(), &facts.name),
        base: facts.error_base.clone().unwrap_or_default(),
        unset: facts
            .values
            .iter()
            .find(|value| value.is_unset())
            .map(|value| value.member.clone())
            .unwrap_or_default(),
        values: facts.values.iter().map(Value::new).collect(),
    }
}

fn named_enum(facts: &FactEnum) -> NamedEnum {
    let values: Vec<Value> = facts
        .values
        .iter()
        .filter(|value| !value.is_unset())
        .map(Value::new)
        .collect();
    let (example, example_member) = values
        .first()
        .map(|v| (v.short_name.clone(), v.member.clone()))
        .unwrap_or_default();
    NamedEnum {
        name: facts.name.clone(),
        shouty: facts.shouty.clone(),
        doc: python_docstring(facts.doc.as_deref().unwrap_or(&facts.name)),
        sized: facts.sized,
        example,
        example_member,
        values,
    }
}
