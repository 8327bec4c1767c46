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
}

impl Comments {
    /// Indexes the leading (else trailing) comment of every element of `file`.
    pub(crate) fn new(file: &FileDescriptorProto) -> Self {
        let mut by_path = HashMap::new();
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
            }
        }
        Comments { by_path }
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

/// A Python docstring body: backslashes and triple quotes cannot end or break it.
pub(crate) fn python_docstring(text: &str) -> String {
    let mut escaped = text.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"");
    if escaped.ends_with('"') {
        escaped.push(' ');
    }
    escaped
}
