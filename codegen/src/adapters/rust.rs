//! Rust typed clients from adapter manifests: one module per framework, one builder per
//! operation (required parameters in `new`, a setter per optional one, bindable ones
//! accepting a literal or `mlbridge::adapters::bind("variable")`) and a typed output.
//! Built with `quote` and formatted with `prettyplease`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, Operation, Parameter, ValueType};
use crate::rust::HEADER;

/// The file name of the Rust output (all frameworks, as inline modules).
pub(crate) const FILE_NAME: &str = "mlbridge_adapters.rs";

/// Generates `mlbridge_adapters.rs` for `manifests`.
pub(crate) fn generate(manifests: &[Manifest]) -> Result<String> {
    let modules = manifests.iter().map(framework);
    let file: TokenStream = quote! { #(#modules)* };
    let syntax: syn::File = syn::parse2(file)
        .map_err(|e| Error::Rust(format!("generated adapter code does not parse: {e}")))?;
    Ok(format!(
        "{HEADER}\n// Typed framework clients from adapter manifests: {}.\n\n{}",
        manifests
            .iter()
            .map(|m| format!("{}.toml", m.id))
            .collect::<Vec<_>>()
            .join(", "),
        prettyplease::unparse(&syntax)
    ))
}

fn framework(manifest: &Manifest) -> TokenStream {
    let module = ident(&manifest.id);
    let id = &manifest.id;
    let mut doc = doc_lines(&manifest.description);
    doc.push(String::new());
    doc.push(format!(
        "Typed clients for the `{id}` framework adapter (generated from `{id}.toml`). Python implementation: `{}`.",
        manifest.implementation
    ));
    let doc = docs(&doc);
    let operations = manifest.operations.iter().map(|op| operation(manifest, op));
    // prettyplease's layout is not rustfmt's; keep `cargo fmt --check` off generated code.
    quote! {
        #doc
        #[rustfmt::skip]
        pub mod #module {
            #![allow(clippy::too_many_arguments)]

            /// The framework id on the wire.
            pub const FRAMEWORK: &str = #id;

            #(#operations)*
        }
    }
}

fn operation(manifest: &Manifest, op: &Operation) -> TokenStream {
    let ty = format_ident!("{}", op.type_name());
    let output = format_ident!("{}Output", op.type_name());
    let name = &op.name;

    let mut doc = doc_lines(&op.description);
    doc.push(String::new());
    let wraps = op
        .target
        .as_ref()
        .map(|t| format!(" wrapping `{t}`"))
        .unwrap_or_default();
    doc.push(format!(
        "Operation `{}.{name}` ({}{wraps}). Required parameters go to [`{ty}::new`], optional ones have setters; [`{ty}::call`] runs it on a worker through the engine.",
        manifest.id,
        op.kind.as_str(),
    ));
    if op.parameters.iter().any(|p| p.bindable) {
        let names: Vec<String> = op
            .parameters
            .iter()
            .filter(|p| p.bindable)
            .map(|p| format!("`{}`", p.name))
            .collect();
        doc.push(String::new());
        doc.push(format!(
            "Bindable to session variables with [`bind`](::mlbridge_client::adapters::bind): {}.",
            names.join(", ")
        ));
    }
    let doc = docs(&doc);

    let required: Vec<&Parameter> = op.parameters.iter().filter(|p| p.required).collect();
    let new_args = required.iter().map(|p| {
        let arg = ident(&p.name);
        let ty = argument_type(p);
        quote! { #arg: #ty }
    });
    let new_sets = required.iter().map(|p| {
        let arg = ident(&p.name);
        let key = &p.name;
        let value = encode(p, quote!(#arg));
        quote! { call.set(#key, #value); }
    });
    let new_doc = docs(&{
        let mut lines = vec![format!("Starts a `{}.{name}` call.", manifest.id)];
        for p in &required {
            lines.push(format!("* `{}`: {}", p.name, param_summary(p)));
        }
        lines
    });

    let setters = op.parameters.iter().filter(|p| !p.required).map(|p| {
        let method = ident(&p.name);
        let key = &p.name;
        let ty = argument_type(p);
        let value = encode(p, quote!(value));
        let doc = docs(&[param_summary(p)]);
        quote! {
            #doc
            pub fn #method(mut self, value: #ty) -> Self {
                self.call.set(#key, #value);
                self
            }
        }
    });

    let fields = op.results.iter().map(|r| {
        let field = ident(&r.name);
        let ty = value_type(r.ty);
        let mut lines = doc_lines(&r.description);
        if lines.is_empty() {
            lines.push(format!("Result `{}`.", r.name));
        }
        let doc = docs(&lines);
        quote! { #doc pub #field: #ty, }
    });
    let takes = op.results.iter().map(|r| {
        let field = ident(&r.name);
        let key = &r.name;
        quote! {
            #field: ::mlbridge_client::adapters::take_result(FRAMEWORK, Self::OPERATION, &mut response, #key)?,
        }
    });
    let response_binding = if op.results.is_empty() {
        quote!(response)
    } else {
        quote!(mut response)
    };
    let default_impl = if required.is_empty() {
        quote! {
            impl Default for #ty {
                fn default() -> Self {
                    Self::new()
                }
            }
        }
    } else {
        quote! {}
    };
    let output_doc = docs(&[format!(
        "The results of [`{ty}`], typed as the manifest declares them."
    )]);

    quote! {
        #doc
        #[derive(Debug, Clone)]
        #[must_use = "an operation does nothing until it is `call`ed"]
        pub struct #ty {
            call: ::mlbridge_client::adapters::OperationCall,
        }

        impl #ty {
            /// The operation's name on the wire.
            pub const OPERATION: &'static str = #name;

            #new_doc
            pub fn new(#(#new_args),*) -> Self {
                #[allow(unused_mut)]
                let mut call = ::mlbridge_client::adapters::OperationCall::new(FRAMEWORK, Self::OPERATION);
                #(#new_sets)*
                #ty { call }
            }

            #(#setters)*

            /// Adds a call label, passed through to the worker.
            pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
                self.call.label(key, value);
                self
            }

            /// Runs the operation on a worker through the engine, in `session` (which owns any
            /// bound variables).
            pub async fn call(self, session: &::mlbridge_client::Session) -> ::mlbridge_client::Result<#output> {
                let #response_binding = self.call.execute(session).await?;
                Ok(#output {
                    #(#takes)*
                    response,
                })
            }
        }

        #default_impl

        #output_doc
        #[derive(Debug, Clone)]
        pub struct #output {
            #(#fields)*
            /// The engine's whole answer: resolved parameters, the variables and versions
            /// bindings were read from, the worker and timings.
            pub response: ::mlbridge_client::adapters::pb::ExecuteFrameworkOperationResponse,
        }
    }
}

/// The Rust type of a value of `ty` (results, and parameters that take literals only).
fn value_type(ty: ValueType) -> TokenStream {
    match ty {
        ValueType::Float => quote!(f64),
        ValueType::Integer => quote!(i64),
        ValueType::Boolean => quote!(bool),
        ValueType::String | ValueType::Choice => quote!(String),
        ValueType::Bytes => quote!(::mlbridge_client::values::Bytes),
        ValueType::Embedding => quote!(::mlbridge_client::adapters::pb::Embedding),
        ValueType::Tensor => quote!(::mlbridge_client::adapters::pb::Tensor),
        ValueType::Module => quote!(::mlbridge_client::adapters::pb::ModuleRef),
        ValueType::List => quote!(Vec<::mlbridge_client::adapters::pb::Value>),
        ValueType::Map => {
            quote!(::std::collections::HashMap<String, ::mlbridge_client::adapters::pb::Value>)
        }
        ValueType::Any => quote!(::mlbridge_client::adapters::pb::Value),
    }
}

fn is_dynamic(ty: ValueType) -> bool {
    matches!(ty, ValueType::List | ValueType::Map | ValueType::Any)
}

/// The type a builder method takes for parameter `p`.
fn argument_type(p: &Parameter) -> TokenStream {
    if p.bindable {
        let target = if is_dynamic(p.ty) {
            quote!(::mlbridge_client::adapters::Dynamic)
        } else {
            value_type(p.ty)
        };
        quote!(impl ::mlbridge_client::adapters::IntoParam<#target>)
    } else if is_dynamic(p.ty) {
        quote!(impl ::mlbridge_client::values::WireValue)
    } else if matches!(p.ty, ValueType::String | ValueType::Choice) {
        quote!(impl Into<String>)
    } else {
        value_type(p.ty)
    }
}

/// The expression turning argument `arg` of parameter `p` into a `ParameterValue`.
fn encode(p: &Parameter, arg: TokenStream) -> TokenStream {
    if p.bindable {
        let target = if is_dynamic(p.ty) {
            quote!(::mlbridge_client::adapters::Dynamic)
        } else {
            value_type(p.ty)
        };
        quote!(::mlbridge_client::adapters::IntoParam::<#target>::into_param(#arg))
    } else if matches!(p.ty, ValueType::String | ValueType::Choice) {
        quote!(::mlbridge_client::adapters::dynamic(Into::<String>::into(#arg)))
    } else {
        quote!(::mlbridge_client::adapters::dynamic(#arg))
    }
}

fn param_summary(p: &Parameter) -> String {
    let mut text = if p.description.is_empty() {
        format!("Parameter `{}`.", p.name)
    } else {
        p.description.trim().to_owned()
    };
    let mut facts = vec![format!("type `{}`", p.ty)];
    if let Some(default) = &p.default {
        facts.push(format!(
            "default `{}`",
            crate::adapters::literal_text(default)
        ));
    }
    if p.bindable {
        facts.push("bindable".to_owned());
    }
    if p.callback {
        facts.push("the name of a callback registered in the session".to_owned());
    }
    text.push_str(&format!(" ({})", facts.join(", ")));
    text
}

fn doc_lines(text: &str) -> Vec<String> {
    let text = text.trim();
    if text.is_empty() {
        Vec::new()
    } else {
        text.lines().map(|l| l.trim_end().to_owned()).collect()
    }
}

fn docs(lines: &[String]) -> TokenStream {
    let lines = lines.iter().map(|line| {
        let line = if line.is_empty() {
            String::new()
        } else {
            format!(" {line}")
        };
        quote! { #[doc = #line] }
    });
    quote! { #(#lines)* }
}

fn ident(name: &str) -> Ident {
    // Manifest names are validated snake_case identifiers that are not keywords.
    Ident::new(name, Span::call_site())
}
