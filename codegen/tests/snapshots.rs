//! Snapshot tests: the generated files for the fixture protos, per setting, are checked in
//! under `tests/snapshots/`. Review changes with `git diff`; accept them with
//! `UPDATE_EXPECT=1 cargo test -p mlbridge-codegen --test snapshots`.
//!
//! The Rust snapshots form the crate `tests/output`, which must compile; the Python ones are
//! imported and type-checked by the Python test suite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use expect_test::expect_file;

const FIXTURES: &[&str] = &[
    "fixtures/kitchen/v1/kitchen.proto",
    "fixtures/common/v1/common.proto",
    "fixtures/options/v1/options.proto",
    "fixtures/keywords/v1/keywords.proto",
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/proto")
}

/// Checks every file of `files` against `snapshots/<folder>/<path>`, and that the folder
/// holds no file the generator no longer writes.
fn check(folder: &str, files: &BTreeMap<String, String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(folder);
    for (path, contents) in files {
        let target = root.join(path);
        // expect-test writes new snapshots but does not create their folders.
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        expect_file![target].assert_eq(contents);
    }
    let mut on_disk = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("snapshot folder exists") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                on_disk.push(relative);
            }
        }
    }
    on_disk.sort();
    let expected: Vec<&String> = files.keys().collect();
    assert_eq!(
        on_disk.iter().collect::<Vec<_>>(),
        expected,
        "snapshots/{folder} differs from the files the generator writes (left: on disk)"
    );
}

fn configure() -> mlbridge_codegen::Builder {
    mlbridge_codegen::configure().include(fixtures_dir())
}

#[test]
fn python_protoc_layout() {
    let generated = configure()
        .rust(false)
        .python(true)
        .generate(FIXTURES)
        .unwrap();
    check("python", &generated.python);
}

#[test]
fn python_in_a_package() {
    let generated = configure()
        .rust(false)
        .python(true)
        .python_package("acme.protos")
        .generate(FIXTURES)
        .unwrap();
    check("python-package", &generated.python);
}

#[test]
fn rust_messages_and_services() {
    let generated = configure()
        .rust_include_file("mod.rs")
        .generate(FIXTURES)
        .unwrap();
    check("rust", &generated.rust);
}

#[test]
fn output_is_deterministic() {
    let first = configure().python(true).generate(FIXTURES).unwrap();
    let second = configure().python(true).generate(FIXTURES).unwrap();
    assert_eq!(first, second);
}
