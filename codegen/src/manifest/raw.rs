//! The manifest as written: serde's view of the TOML, with spans for error positions.

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) framework: Spanned<RawFramework>,
    #[serde(default)]
    pub(super) operation: Vec<Spanned<RawOperation>>,
    #[serde(default)]
    pub(super) tool: Vec<Spanned<RawTool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFramework {
    pub(super) id: Spanned<String>,
    pub(super) implementation: Spanned<String>,
    pub(super) package: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperation {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) function: Option<Spanned<String>>,
    pub(super) target: Option<Spanned<String>>,
    pub(super) variable_aware: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) parameter: Vec<Spanned<RawParameter>>,
    #[serde(default)]
    pub(super) result: Vec<Spanned<RawResult>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParameter {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) ty: Spanned<String>,
    #[serde(default)]
    pub(super) required: bool,
    pub(super) default: Option<Spanned<toml::Value>>,
    pub(super) bindable: Option<Spanned<bool>>,
    pub(super) callback: Option<Spanned<bool>>,
    pub(super) python_name: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) description: String,
    pub(super) constraints: Option<Spanned<RawConstraints>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResult {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) ty: Spanned<String>,
    #[serde(default)]
    pub(super) description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTool {
    pub(super) name: Spanned<String>,
    pub(super) function: Option<Spanned<String>>,
    pub(super) returns: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) streaming: bool,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) parameter: Vec<Spanned<RawParameter>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConstraints {
    pub(super) min: Option<Spanned<f64>>,
    pub(super) max: Option<Spanned<f64>>,
    pub(super) min_exclusive: Option<Spanned<bool>>,
    pub(super) max_exclusive: Option<Spanned<bool>>,
    pub(super) choices: Option<Spanned<Vec<String>>>,
    pub(super) min_length: Option<Spanned<u64>>,
    pub(super) max_length: Option<Spanned<u64>>,
    pub(super) pattern: Option<Spanned<String>>,
    pub(super) dimensions: Option<Spanned<u32>>,
    pub(super) shape: Option<Spanned<Vec<u64>>>,
    pub(super) dtype: Option<Spanned<String>>,
    pub(super) allowed_modules: Option<Spanned<Vec<String>>>,
    pub(super) element_type: Option<Spanned<String>>,
    pub(super) max_items: Option<Spanned<u64>>,
    pub(super) nullable: Option<Spanned<bool>>,
}
