//! Comments from `.proto` source info, looked up by descriptor path, so generated code can
//! carry the schema's documentation.

use std::collections::HashMap;

use prost_types::FileDescriptorProto;

/// Paths into `FileDescriptorProto` (field numbers and indexes), as protoc records them.
pub(crate) mod path {
    /// `service[i]`.
    pub(crate) fn service(i: usize) -> Vec<i32> {
        vec![6, i as i32]
    }
    /// A child of `parent`: `field` is the repeated field's number, `i` the index.
    pub(crate) fn child(parent: &[i32], field: i32, i: usize) -> Vec<i32> {
        let mut path = parent.to_vec();
        path.extend([field, i as i32]);
        path
    }
}

/// The documentation of every element of one file.
#[derive(Debug, Default)]
pub(crate) struct Comments {
    by_path: HashMap<Vec<i32>, String>,
    /// Every comment line of each element as grpcio-tools' Python plugin takes them.
    grpc_lines: HashMap<Vec<i32>, Vec<String>>,
    /// Every comment line of each element as mypy-protobuf takes them.
    mypy_lines: HashMap<Vec<i32>, Vec<String>>,
}

impl Comments {
    /// Indexes the leading (else trailing) comment of every element of `file`.
    pub(crate) fn new(file: &FileDescriptorProto) -> Self {
        let mut by_path = HashMap::new();
        let mut by_path_grpc = HashMap::new();
        let mut mypy_lines = HashMap::new();
        if let Some(info) = &file.source_code_info {
            for location in &info.location {
                let text = location
                    .leading_comments
                    .as_deref()
                    .or(location.trailing_comments.as_deref())
                    .map(clean)
                    .unwrap_or_default();
                if !text.is_empty() {
                    by_path.entry(location.path.clone()).or_insert(text);
                }
                let lines = grpc_lines(location);
                if !lines.is_empty() {
                    by_path_grpc.entry(location.path.clone()).or_insert(lines);
                }
                let lines = mypy_protobuf_lines(location);
                if !lines.is_empty() {
                    mypy_lines.entry(location.path.clone()).or_insert(lines);
                }
            }
        }
        Comments {
            by_path,
            grpc_lines: by_path_grpc,
            mypy_lines,
        }
    }

    /// The docstring grpcio-tools writes for the element at `path`, its closing quotes
    /// on their own line at `indent`: every leading detached comment (each followed by an
    /// empty line), the leading and the trailing comment, line by line with leading spaces
    /// removed; a fixed sentence when there is none.
    pub(crate) fn grpc_docstring(&self, path: &[i32], indent: &str) -> String {
        let Some(lines) = self.grpc_lines.get(path) else {
            return "\"\"\"Missing associated documentation comment in .proto file.\"\"\""
                .to_owned();
        };
        let mut text = String::from("\"\"\"");
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim_start_matches(' ');
            if i > 0 && !line.is_empty() {
                text.push_str(indent);
            }
            text.push_str(&python_docstring_line(line));
            text.push('\n');
        }
        text.push_str(indent);
        text.push_str("\"\"\"");
        text
    }

    /// The comment at `path` as mypy-protobuf reads it for a deprecation message: the last
    /// leading detached comment (then an empty line), the leading and the trailing comment,
    /// one space removed from the start of each line; `None` if there is none.
    pub(crate) fn mypy_protobuf_text(&self, path: &[i32]) -> Option<String> {
        self.mypy_lines.get(path).map(|lines| lines.join("\n"))
    }

    /// The comment at `path`, trimmed, with common indentation removed; `None` if absent.
    pub(crate) fn get(&self, path: &[i32]) -> Option<&str> {
        self.by_path.get(path).map(String::as_str)
    }
}

fn clean(comment: &str) -> String {
    let lines: Vec<&str> = comment.lines().map(str::trim_end).collect();
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let text: Vec<&str> = lines
        .iter()
        .map(|line| line.get(indent..).unwrap_or(""))
        .collect();
    text.join("\n").trim().to_owned()
}

/// The comment lines of `location` as grpcio-tools' Python plugin collects them: each
/// leading detached comment then an empty line, the leading comment, the trailing one,
/// each split as C++'s `getline` splits (no piece after a final newline).
fn grpc_lines(location: &prost_types::source_code_info::Location) -> Vec<String> {
    fn split(text: &str, into: &mut Vec<String>) {
        if text.is_empty() {
            return;
        }
        let mut pieces: Vec<&str> = text.split('\n').collect();
        if text.ends_with('\n') {
            pieces.pop();
        }
        into.extend(pieces.into_iter().map(str::to_owned));
    }
    let mut lines = Vec::new();
    for detached in &location.leading_detached_comments {
        split(detached, &mut lines);
        lines.push(String::new());
    }
    split(location.leading_comments(), &mut lines);
    split(location.trailing_comments(), &mut lines);
    lines
}

/// The comment lines of `location` as mypy-protobuf's `_get_comments` collects them.
fn mypy_protobuf_lines(location: &prost_types::source_code_info::Location) -> Vec<String> {
    fn split(text: &str) -> Vec<String> {
        if text.is_empty() {
            return Vec::new();
        }
        text.trim_end()
            .split('\n')
            .map(|line| line.strip_prefix(' ').unwrap_or(line).to_owned())
            .collect()
    }
    let mut lines = location
        .leading_detached_comments
        .last()
        .map(|detached| split(detached))
        .unwrap_or_default();
    let leading = split(location.leading_comments());
    let trailing = split(location.trailing_comments());
    let more = !leading.is_empty() || !trailing.is_empty();
    if !lines.is_empty() && more {
        lines.push(String::new());
    }
    lines.extend(leading);
    lines.extend(trailing);
    lines
}

/// One line of a docstring as grpcio-tools writes it, but never breaking the string: a
/// triple quote (which ends protoc's docstring, a syntax error) is escaped.
fn python_docstring_line(line: &str) -> String {
    line.replace("\"\"\"", "\\\"\\\"\\\"")
}

/// A Python docstring body: backslashes and triple quotes cannot end or break it.
pub(crate) fn python_docstring(text: &str) -> String {
    let mut escaped = text.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"");
    if escaped.ends_with('"') {
        escaped.push(' ');
    }
    escaped
}
