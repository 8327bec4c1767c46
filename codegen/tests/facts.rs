//! Facts written once in the proto reach Rust with no hand edit: a new error kind and a new
//! dtype added to a copy of `ml_bridge.proto` get their `grpc_code()`, `retryable()`,
//! `name()`, `from_name()` and `item_size()` arms in the generated code.

use std::path::Path;

const NEW_KIND: &str = "  // The caller used up its quota; try again after the window resets.\n  \
    ERROR_KIND_QUOTA_EXCEEDED = 99 [(mlbridge.options.grpc_code) = RESOURCE_EXHAUSTED, \
    (mlbridge.options.retryable) = true];\n";
const NEW_DTYPE: &str = "  DTYPE_FLOAT8_E4M3 = 99 [(mlbridge.options.short_name) = \"float8_e4m3\", \
    (mlbridge.options.item_size) = 1];\n";

/// `text` with `addition` inserted on the line after the one holding `anchor`.
fn insert_after(text: &str, anchor: &str, addition: &str) -> String {
    let at = text
        .find(anchor)
        .unwrap_or_else(|| panic!("`{anchor}` in the proto"));
    let end = at + text[at..].find('\n').unwrap() + 1;
    format!("{}{addition}{}", &text[..end], &text[end..])
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Generated Rust for a copy of the real proto with one more error kind and dtype.
fn generate_extended() -> String {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto"),
        dir.path(),
    );
    let schema = dir.path().join("ml_bridge.proto");
    let text = std::fs::read_to_string(&schema).unwrap();
    let text = insert_after(&text, "ERROR_KIND_LOCK_NOT_HELD = 27", NEW_KIND);
    let text = insert_after(&text, "DTYPE_COMPLEX128 = 15", NEW_DTYPE);
    std::fs::write(&schema, text).unwrap();
    let generated = mlbridge_codegen::configure()
        .include(dir.path())
        .generate(&["ml_bridge_options.proto", "ml_bridge.proto"])
        .expect("the extended proto generates");
    generated.rust["mlbridge.v1.rs"].clone()
}

/// The body of `fn <name>` inside `impl <ty>`, up to the next `fn`.
fn method<'a>(code: &'a str, ty: &str, name: &str) -> &'a str {
    let block = &code[code.find(&format!("impl {ty} {{")).expect("impl block")..];
    let start = block.find(&format!("fn {name}(")).expect("method");
    let rest = &block[start..];
    let end = rest[3..].find("fn ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

#[test]
fn a_new_error_kind_gets_its_code_and_retryability() {
    let code = generate_extended();
    assert!(code.contains("QuotaExceeded = 99"), "enum variant");
    assert!(
        method(&code, "ErrorKind", "grpc_code")
            .contains("Self::QuotaExceeded => tonic::Code::ResourceExhausted")
    );
    assert!(method(&code, "ErrorKind", "retryable").contains("Self::QuotaExceeded"));
}

#[test]
fn a_new_dtype_gets_its_name_and_item_size() {
    let code = generate_extended();
    assert!(method(&code, "Dtype", "name").contains("Self::Float8E4m3 => \"float8_e4m3\""));
    assert!(
        method(&code, "Dtype", "from_name")
            .contains("\"float8_e4m3\" => ::core::option::Option::Some(Self::Float8E4m3)")
    );
    assert!(
        method(&code, "Dtype", "item_size")
            .contains("Self::Float8E4m3 => ::core::option::Option::Some(1usize)")
    );
}
