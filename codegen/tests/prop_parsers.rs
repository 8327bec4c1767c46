//! Property tests of the generator's front ends: arbitrary text, and mutations of real
//! inputs, fed to the manifest reader and to the proto front end never panic; every
//! refusal is an error of the right kind with a message that names the file, and every
//! accepted input generates Rust code that parses.

use std::path::Path;

use mlbridge_codegen::{Error, manifest};
use proptest::prelude::*;

mod support;
use support::check;

/// An edit of a text: arbitrary text at a place, a deleted or repeated line, a cut.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    DeleteLine(usize),
    RepeatLine(usize),
    ReplaceLine(usize, String),
    Truncate(usize),
}

/// Tokens that mean something to TOML, to the manifest format or to protobuf.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-z_]{1,10}",
        2 => prop::sample::select(vec![
            "=", "[", "]", "[[", "]]", "{", "}", "\"", "'", ",", ";", "#", "//", "/*", "\n",
            "nan", "inf", "-1", "99999999999999999999", "1e999", "true", "\"\"", "[]", "{}",
            "type", "match", "self", "async", "default", "constraints", "bindable", "required",
            "choice", "tensor", "any", "map", "list", "pattern", "\"(\"", "message", "enum",
            "service", "rpc", "oneof", "map<", ">", "repeated", "optional", "import", "package",
            "option", "reserved", "extend", "stream", "returns", "0", "536870912", "max",
            "\u{0}", "\u{feff}", "é", "..", "/",
        ])
        .prop_map(str::to_owned),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        4 => (at, token()).prop_map(|(i, t)| Edit::Insert(i, t)),
        2 => at.prop_map(Edit::DeleteLine),
        1 => at.prop_map(Edit::RepeatLine),
        2 => (at, token()).prop_map(|(i, t)| Edit::ReplaceLine(i, t)),
        1 => at.prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_owned();
    for edit in edits {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let line = |i: usize| if lines.is_empty() { 0 } else { i % lines.len() };
        match edit {
            Edit::Insert(i, token) => {
                let mut at = i % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, token);
                continue;
            }
            Edit::Truncate(i) => {
                let mut at = i % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.truncate(at);
                continue;
            }
            Edit::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(line(*i));
            }
            Edit::RepeatLine(i) if !lines.is_empty() => {
                let l = line(*i);
                lines.insert(l, lines[l].clone());
            }
            Edit::ReplaceLine(i, token) if !lines.is_empty() => {
                let l = line(*i);
                lines[l] = token.clone();
            }
            _ => {}
        }
        text = lines.join("\n");
    }
    text
}

fn repo(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const MANIFESTS: &[&str] = &[
    "proto/adapters/builtin.toml",
    "proto/adapters/dspy.toml",
    "proto/adapters/sklearn.toml",
];

/// A manifest: arbitrary text, or a checked-in manifest with a few edits.
fn manifest_text() -> impl Strategy<Value = String> {
    let sources: Vec<String> = MANIFESTS.iter().map(|p| repo(p)).collect();
    prop_oneof![
        1 => any::<String>(),
        1 => prop::collection::vec(token(), 0..40).prop_map(|t| t.join(" ")),
        6 => (prop::sample::select(sources), prop::collection::vec(edit(), 1..4))
            .prop_map(|(text, edits)| apply(&text, &edits)),
    ]
}

/// Generated Rust must at least be Rust.
fn assert_rust_parses(
    files: &std::collections::BTreeMap<String, String>,
) -> Result<(), TestCaseError> {
    for (name, code) in files {
        if let Err(error) = syn::parse_file(code) {
            return Err(TestCaseError::fail(format!(
                "generated {name} is not Rust: {error}"
            )));
        }
    }
    Ok(())
}

#[test]
fn arbitrary_manifest_text_is_read_or_refused_with_its_place() {
    let accepted = std::sync::atomic::AtomicU64::new(0);
    check("codegen-manifest-text", 256, manifest_text(), |text| {
        let path = Path::new("adapters/fuzz.toml");
        match manifest::parse(path, &text) {
            Ok(parsed) => {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // What was accepted must generate code: write it where the generator reads.
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join(format!("{}.toml", parsed.id)), &text).unwrap();
                let generated = mlbridge_codegen::configure()
                    .python(true)
                    .manifests(dir.path())
                    .generate(&[] as &[&str]);
                match generated {
                    Ok(generated) => assert_rust_parses(&generated.rust)?,
                    Err(error) => {
                        return Err(TestCaseError::fail(format!(
                            "parsed, but generation failed: {error}"
                        )));
                    }
                }
            }
            Err(Error::Manifest(message)) => {
                prop_assert!(
                    message.starts_with("adapters/fuzz.toml:"),
                    "the error does not name the file: {}",
                    message
                );
            }
            Err(other) => {
                return Err(TestCaseError::fail(format!(
                    "unexpected error kind: {other:?}"
                )));
            }
        }
        Ok(())
    });
    // Without accepted cases the generation half would be untested.
    assert!(accepted.into_inner() > 0, "no generated manifest was valid");
}

const PROTOS: &[&str] = &[
    "tests/fixtures/proto/fixtures/kitchen/v1/kitchen.proto",
    "tests/fixtures/proto/fixtures/keywords/v1/keywords.proto",
    "tests/fixtures/proto/fixtures/common/v1/common.proto",
    "proto/ml_bridge_options.proto",
];

/// A small proto built from parts, with names that may clash or be keywords.
fn proto_from_parts() -> impl Strategy<Value = String> {
    let ident = prop_oneof![
        4 => "[A-Za-z][A-Za-z0-9_]{0,6}",
        1 => prop::sample::select(vec![
            "type", "self", "Self", "super", "match", "async", "None", "connect", "New",
            "Foo_bar", "FooBar", "foo_bar", "E_A", "A", "_", "r#x",
        ])
        .prop_map(str::to_owned),
    ];
    let scalar = prop::sample::select(vec![
        "int32", "string", "bytes", "double", "bool", "uint64", "sint32", "fixed64",
    ]);
    let field = (
        prop::sample::select(vec!["", "repeated ", "optional "]),
        scalar,
        ident.clone(),
        1u32..20,
    )
        .prop_map(|(label, ty, name, n)| format!("  {label}{ty} {name} = {n};\n"));
    let message = (ident.clone(), prop::collection::vec(field, 0..4))
        .prop_map(|(name, fields)| format!("message {name} {{\n{}}}\n", fields.concat()));
    let value = (ident.clone(), 0i32..4).prop_map(|(name, n)| format!("  {name} = {n};\n"));
    let enumeration = (ident.clone(), prop::collection::vec(value, 1..4))
        .prop_map(|(name, values)| format!("enum {name} {{\n{}}}\n", values.concat()));
    let rpc = (ident.clone(), ident.clone(), ident.clone(), any::<bool>()).prop_map(
        |(name, input, output, stream)| {
            let stream = if stream { "stream " } else { "" };
            format!("  rpc {name}({input}) returns ({stream}{output});\n")
        },
    );
    let service = (ident.clone(), prop::collection::vec(rpc, 0..3))
        .prop_map(|(name, rpcs)| format!("service {name} {{\n{}}}\n", rpcs.concat()));
    let item = prop_oneof![3 => message, 2 => enumeration, 1 => service];
    (
        "[a-z][a-z0-9]{0,5}(\\.[a-z][a-z0-9]{0,5}){0,2}",
        prop::collection::vec(item, 0..5),
    )
        .prop_map(|(package, items)| {
            format!(
                "syntax = \"proto3\";\npackage {package};\n{}",
                items.concat()
            )
        })
}

fn proto_text() -> impl Strategy<Value = String> {
    let sources: Vec<String> = PROTOS.iter().map(|p| repo(p)).collect();
    prop_oneof![
        1 => any::<String>(),
        1 => prop::collection::vec(token(), 0..60).prop_map(|t| t.join(" ")),
        3 => proto_from_parts(),
        4 => (prop::sample::select(sources), prop::collection::vec(edit(), 1..4))
            .prop_map(|(text, edits)| apply(&text, &edits)),
    ]
}

#[test]
fn arbitrary_proto_text_generates_rust_or_is_refused() {
    let accepted = std::sync::atomic::AtomicU64::new(0);
    check("codegen-proto-text", 256, proto_text(), |text| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fuzz.proto"), &text).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // The fixtures' own imports resolve, so that edits of them get past the imports.
        let generated = mlbridge_codegen::configure()
            .include(dir.path())
            .include(root.join("tests/fixtures/proto"))
            .include(root.join("proto"))
            .python(true)
            .generate(&["fuzz.proto"]);
        match generated {
            Ok(generated) => {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                assert_rust_parses(&generated.rust)?;
            }
            Err(Error::Proto(message) | Error::Rust(message)) => {
                prop_assert!(!message.trim().is_empty());
                prop_assert!(
                    message.contains("fuzz.proto") || message.contains("import"),
                    "the error names no file: {}",
                    message
                );
            }
            Err(other) => {
                return Err(TestCaseError::fail(format!(
                    "unexpected error kind: {other:?}"
                )));
            }
        }
        Ok(())
    });
    assert!(accepted.into_inner() > 0, "no generated proto was valid");
}
