//! The options inside `#[tool(...)]`: `name = "..."`, `streaming` and `params(a = "...")`.

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Ident, LitStr};

/// What the attribute asked for.
#[derive(Default)]
pub(crate) struct Options {
    /// The tool's wire name, if it differs from the function's.
    pub(crate) name: Option<LitStr>,
    /// Whether the function returns a stream of chunks.
    pub(crate) streaming: bool,
    /// Per-parameter descriptions, in the order written.
    pub(crate) params: Vec<(Ident, LitStr)>,
}

impl Options {
    /// Parses the attribute's arguments (the tokens inside `#[tool(...)]`).
    pub(crate) fn parse(attr: TokenStream) -> syn::Result<Self> {
        let mut options = Options::default();
        syn::meta::parser(|meta| options.option(meta)).parse2(attr)?;
        Ok(options)
    }

    fn option(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("name") {
            if self.name.is_some() {
                return Err(meta.error("duplicate `name` option"));
            }
            let name: LitStr = meta.value()?.parse()?;
            check_tool_name(&name)?;
            self.name = Some(name);
        } else if meta.path.is_ident("streaming") {
            if self.streaming {
                return Err(meta.error("duplicate `streaming` option"));
            }
            if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                return Err(meta.error("`streaming` takes no value: write `#[tool(streaming)]`"));
            }
            self.streaming = true;
        } else if meta.path.is_ident("params") {
            meta.parse_nested_meta(|param| {
                let ident = param.path.require_ident()?.clone();
                if self
                    .params
                    .iter()
                    .any(|(seen, _)| seen.unraw() == ident.unraw())
                {
                    return Err(param.error(format!(
                        "duplicate description for parameter `{}`",
                        ident.unraw()
                    )));
                }
                let description: LitStr = param.value()?.parse()?;
                self.params.push((ident, description));
                Ok(())
            })?;
        } else {
            let key = meta
                .path
                .get_ident()
                .map_or_else(|| "this path".to_owned(), |i| format!("`{i}`"));
            return Err(meta.error(format!(
                "unknown #[tool] option {key}: expected `name = \"...\"`, `streaming` or `params(arg = \"description\", ...)`"
            )));
        }
        Ok(())
    }
}

/// Tool names follow `ToolSpec.name`: `[A-Za-z_][A-Za-z0-9_.]{0,127}`.
fn check_tool_name(name: &LitStr) -> syn::Result<()> {
    let text = name.value();
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if first_ok && rest_ok && text.len() <= 128 {
        Ok(())
    } else {
        Err(syn::Error::new(
            name.span(),
            format!(
                "invalid tool name {text:?}: expected a letter or `_`, then letters, digits, `_` or `.` (at most 128 characters)"
            ),
        ))
    }
}
