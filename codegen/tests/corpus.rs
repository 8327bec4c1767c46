//! The checked-in corpus of malformed inputs (`tests/corpus/protos`, `tests/corpus/manifests`):
//! each file is refused, without a panic, with an error of the right kind whose message
//! contains every `expect:` line written at the top of the file.

use std::path::{Path, PathBuf};

use mlbridge_codegen::{Error, manifest};

fn corpus(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(kind)
}

/// The files of one corpus folder with extension `ext`, sorted.
fn files(kind: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(kind))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// The `expect:` lines at the top of a file (after the comment marker `marker`).
fn expectations(path: &Path, marker: &str) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .take_while(|line| line.starts_with(marker))
        .filter_map(|line| line.strip_prefix(&format!("{marker} expect: ")))
        .map(str::to_owned)
        .collect()
}

/// Files whose expectation cannot be written inside them.
fn extra_expectations(name: &str) -> Vec<String> {
    match name {
        "not_utf8.proto" => vec!["file 'not_utf8.proto' is not valid utf-8".to_owned()],
        _ => Vec::new(),
    }
}

#[test]
fn every_malformed_proto_is_refused_with_its_error() {
    let include = corpus("protos");
    let protos = files("protos", "proto");
    assert!(protos.len() >= 20, "{} protos", protos.len());
    let mut failures = Vec::new();
    for path in &protos {
        let name = path.file_name().unwrap().to_str().unwrap();
        let mut expected = expectations(path, "//");
        expected.extend(extra_expectations(name));
        assert!(!expected.is_empty(), "{name} has no `// expect:` line");
        let outcome = std::panic::catch_unwind(|| {
            mlbridge_codegen::configure()
                .include(&include)
                .python(true)
                .generate(&[name])
        });
        let message = match outcome {
            Err(_) => {
                failures.push(format!("{name}: the generator panicked"));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("{name}: accepted"));
                continue;
            }
            Ok(Err(error @ (Error::Proto(_) | Error::Rust(_)))) => error.to_string(),
            Ok(Err(other)) => {
                failures.push(format!("{name}: unexpected error kind: {other:?}"));
                continue;
            }
        };
        for needle in &expected {
            if !message.contains(needle.as_str()) {
                failures.push(format!("{name}: `{needle}` not in: {message}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_malformed_manifest_is_refused_with_its_error() {
    let manifests = files("manifests", "toml");
    assert!(manifests.len() >= 20, "{} manifests", manifests.len());
    let mut failures = Vec::new();
    for path in &manifests {
        let name = path.file_name().unwrap().to_str().unwrap();
        let expected = expectations(path, "#");
        assert!(!expected.is_empty(), "{name} has no `# expect:` line");
        let outcome = std::panic::catch_unwind(|| manifest::load_files(std::slice::from_ref(path)));
        let message = match outcome {
            Err(_) => {
                failures.push(format!("{name}: the manifest reader panicked"));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("{name}: accepted"));
                continue;
            }
            Ok(Err(error @ (Error::Manifest(_) | Error::Io { .. }))) => error.to_string(),
            Ok(Err(other)) => {
                failures.push(format!("{name}: unexpected error kind: {other:?}"));
                continue;
            }
        };
        // Every manifest error names the file (I/O errors name it too).
        if !message.contains(name) {
            failures.push(format!(
                "{name}: the message does not name the file: {message}"
            ));
        }
        for needle in &expected {
            if !message.contains(needle.as_str()) {
                failures.push(format!("{name}: `{needle}` not in: {message}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
