//! `*_pb2.pyi` and `*_pb2_grpc.pyi`: type stubs as precise as mypy-protobuf's.
//!
//! The stubs describe what the generated modules hold at run time, no more: names that
//! Python cannot spell (keywords) are left out of declarations but kept where the runtime
//! takes them as strings (`HasField`, `ClearField`, `WhichOneof`). Every name, type and
//! import is computed here; the templates only lay the text out.
//!
//! `messages` writes `*_pb2.pyi` (with `enums` for enum classes), `grpc` writes
//! `*_pb2_grpc.pyi`, and `types` spells Python types and collects the imports they need.

mod enums;
mod grpc;
mod messages;
mod types;

pub(crate) use grpc::render_grpc;
pub(crate) use messages::render;

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

    use super::types::relative_name;
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
