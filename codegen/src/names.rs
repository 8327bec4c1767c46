//! Naming rules shared by the emitters: keywords of both languages and protoc's Python
//! module naming, so that every generated name is valid and predictable.

/// Python keywords (`keyword.kwlist`), which cannot be attribute or parameter names.
pub(crate) const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Rust keywords, strict and reserved, of every edition.
pub(crate) const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

/// Whether `name` is a Python keyword.
pub fn is_python_keyword(name: &str) -> bool {
    PYTHON_KEYWORDS.contains(&name)
}

/// Whether `name` is a Rust keyword.
pub fn is_rust_keyword(name: &str) -> bool {
    RUST_KEYWORDS.contains(&name)
}

/// A Python identifier for `name`: keywords get a trailing underscore (PEP 8).
pub fn python_identifier(name: &str) -> String {
    if is_python_keyword(name) {
        format!("{name}_")
    } else {
        name.to_owned()
    }
}

/// A Rust identifier for `name`: keywords become raw identifiers, and the few that cannot be
/// raw (`self`, `Self`, `super`, `crate`) get a trailing underscore, as prost does.
pub fn rust_identifier(name: &str) -> String {
    match name {
        "self" | "Self" | "super" | "crate" => format!("{name}_"),
        _ if is_rust_keyword(name) => format!("r#{name}"),
        _ => name.to_owned(),
    }
}

/// Whether `name` is a valid identifier in both Rust and Python (ASCII letters, digits and
/// underscores, not starting with a digit). Keywords are valid here; they are escaped.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// protoc's Python module for a `.proto` file: `a/b-c.proto` -> `a.b_c_pb2`.
pub(crate) fn python_module(proto_file: &str, suffix: &str) -> String {
    let stem = proto_file.strip_suffix(".proto").unwrap_or(proto_file);
    format!("{}{suffix}", stem.replace('-', "_").replace('/', "."))
}

/// protoc's alias for an imported module: `_` doubled, `.` spelled `_dot_`, so that
/// `a.b` and `a_b` never collide.
pub(crate) fn python_module_alias(module: &str) -> String {
    module.replace('_', "__").replace('.', "_dot_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_protoc() {
        assert_eq!(python_module("a/b-c.proto", "_pb2"), "a.b_c_pb2");
        assert_eq!(
            python_module_alias("fixtures.common.v1.common_pb2"),
            "fixtures_dot_common_dot_v1_dot_common__pb2"
        );
    }

    #[test]
    fn keywords_are_escaped() {
        assert_eq!(python_identifier("from"), "from_");
        assert_eq!(python_identifier("None"), "None_");
        assert_eq!(python_identifier("match"), "match");
        assert_eq!(rust_identifier("match"), "r#match");
        assert_eq!(rust_identifier("self"), "self_");
        assert!(is_identifier("_a1") && !is_identifier("1a") && !is_identifier("a-b"));
    }
}
