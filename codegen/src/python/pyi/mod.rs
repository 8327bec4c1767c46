//! `*_pb2.pyi` and `*_pb2_grpc.pyi`: type stubs as precise as mypy-protobuf's.
//!
//! The stubs describe what the generated modules hold at run time: fields and values that
//! Python cannot spell (keywords) are left out of declarations but kept where the runtime
//! takes them as strings (`HasField`, `ClearField`, `WhichOneof`); classes so named are
//! declared as `_r_<name>`, as mypy-protobuf declares them. Every name, type and import is
//! computed here; the templates only lay the text out.
//!
//! `messages` writes `*_pb2.pyi` (with `enums` for enum classes), `grpc` writes
//! `*_pb2_grpc.pyi`, and `types` spells Python types and collects the imports they need.

mod deprecation;
mod enums;
mod grpc;
mod messages;
mod types;

use crate::names;

pub(crate) use grpc::render_grpc;
pub(crate) use messages::render;

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

/// The module-level alias of the class at `path` (its Python names from the top level
/// down) by which the stubs name it when it is deprecated, without naming a deprecated
/// class: [`global_alias`] for a top-level class; for a nested one `_Nested_` and the
/// names joined by `__`, each `_` in them written `_0`, so that no two paths (and no
/// top-level class) share one (`Outer.Inner` -> `_Nested_Outer__Inner`).
fn class_alias<S: AsRef<str>>(path: &[S]) -> String {
    match path {
        [top] => global_alias(top.as_ref()),
        _ => {
            let parts: Vec<String> = path.iter().map(|p| p.as_ref().replace('_', "_0")).collect();
            format!("_Nested_{}", parts.join("__"))
        }
    }
}

/// The Python name of a message or enum class: a keyword (`None`, `lambda`) is declared
/// as `_r_<name>`, as mypy-protobuf declares it (the runtime class is reached with
/// `getattr`).
fn class_name(proto_name: &str) -> String {
    if names::is_python_keyword(proto_name) {
        format!("_r_{proto_name}")
    } else {
        proto_name.to_owned()
    }
}

/// A module-level alias of a class: `name: TypeAlias = target`. The alias of a deprecated
/// class is where the stub names it, once, without a type checker flagging the use.
pub(super) struct Alias {
    pub(super) name: String,
    pub(super) target: String,
    pub(super) deprecated: bool,
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
    }

    #[test]
    fn class_aliases_never_collide() {
        assert_eq!(global_alias("Outer.Inner"), "_Global_Outer.Inner");
        assert_eq!(class_alias(&["Outer"]), "_Global_Outer");
        assert_eq!(class_alias(&["Outer", "Inner"]), "_Nested_Outer__Inner");
        // Paths that `__` alone would join alike stay apart.
        assert_ne!(class_alias(&["A", "B__C"]), class_alias(&["A__B", "C"]));
        assert_ne!(
            class_alias(&["Outer", "Inner"]),
            class_alias(&["Outer__Inner"])
        );
    }

    #[test]
    fn keyword_classes_are_declared_as_r_and_keyword_members_left_out() {
        let files = generate(
            "syntax = \"proto3\";\npackage p;\n\
             message None { string x = 1; }\n\
             message Holder { None none = 1; string from = 2; string self = 3; }\n\
             service S { rpc async(Holder) returns (None); }\n",
        );
        let stub = &files["test_pb2.pyi"];
        assert!(stub.contains("class _r_None(_message.Message):"), "{stub}");
        assert!(
            stub.contains("def none(self) -> _Global__r_None: ..."),
            "{stub}"
        );
        assert!(!stub.contains("from: "), "{stub}");
        assert!(stub.contains("self_,  # pyright: ignore"), "{stub}");
        assert!(stub.contains("\"from\", b\"from\""), "{stub}");
        let grpc = &files["test_pb2_grpc.pyi"];
        assert!(
            grpc.contains(
                "async_: _grpc.UnaryUnaryMultiCallable[test__pb2.Holder, test__pb2._r_None]"
            ),
            "{grpc}"
        );
    }

    #[test]
    fn deprecated_classes_say_why_and_are_named_through_aliases() {
        let files = generate(
            "syntax = \"proto3\";\npackage p;\n\
             message Old {\n  option deprecated = true; // Use New.\n  message Inner { option deprecated = true; }\n}\n\
             message User { Old old = 1; Old.Inner inner = 2; }\n\
             service S { option deprecated = true; rpc Get(Old) returns (User); }\n",
        );
        let stub = &files["test_pb2.pyi"];
        assert!(
            stub.contains(
                "@_typing_extensions.deprecated(\"Use New.\")\n@_typing.final\nclass Old("
            ),
            "{stub}"
        );
        assert!(
            stub.contains("@_typing_extensions.deprecated(\"This message has been marked as deprecated using proto message options.\")\n    @_typing.final\n    class Inner("),
            "{stub}"
        );
        assert!(stub.contains("_Global_Old: _typing_extensions.TypeAlias = Old  # type: ignore[deprecated, unused-ignore]"), "{stub}");
        assert!(stub.contains("_Nested_Old__Inner: _typing_extensions.TypeAlias = Old.Inner  # type: ignore[deprecated, unused-ignore]"), "{stub}");
        assert!(
            stub.contains("def inner(self) -> _Nested_Old__Inner: ..."),
            "{stub}"
        );
        let grpc = &files["test_pb2_grpc.pyi"];
        assert!(
            grpc.contains(
                "Get: _grpc.UnaryUnaryMultiCallable[test__pb2._Global_Old, test__pb2.User]"
            ),
            "{grpc}"
        );
        assert!(grpc.contains("class SAsyncStub(_Global_SStub):"), "{grpc}");
        assert!(
            grpc.contains("def add_SServicer_to_server(servicer: _Global_SServicer,"),
            "{grpc}"
        );
    }
}
