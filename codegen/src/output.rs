//! Writing generated files: the thin layer over in-memory generation. Paths are checked
//! before anything is written, files are replaced atomically, and `--check` mode reports
//! drift instead of writing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Whether to write files or only compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write files whose contents differ.
    Write,
    /// Write nothing; report files that differ, are missing or (when pruning) extra.
    Check,
}

/// Checks that `path` is relative and stays inside the folder it is joined to.
pub fn safe_relative_path(path: &str) -> Result<&Path> {
    let candidate = Path::new(path);
    let normal = !path.is_empty()
        && candidate
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if normal {
        Ok(candidate)
    } else {
        Err(Error::UnsafeOutputPath {
            path: path.to_owned(),
        })
    }
}

/// Makes `dir` hold exactly `files` (relative path → contents). With `prune`, files under
/// `dir` that are not in `files` are removed (or reported in [`Mode::Check`]).
///
/// Every path is validated before the first write, so a bad path writes nothing. Returns the
/// files that changed (or would change).
pub fn sync_dir(
    dir: &Path,
    files: &BTreeMap<String, String>,
    mode: Mode,
    prune: bool,
) -> Result<Vec<PathBuf>> {
    for path in files.keys() {
        safe_relative_path(path)?;
    }
    let mut changed = Vec::new();
    for (path, contents) in files {
        let target = dir.join(path);
        let current = fs::read(&target).ok();
        if current.as_deref() == Some(contents.as_bytes()) {
            continue;
        }
        changed.push(target.clone());
        if mode == Mode::Write {
            write_atomically(&target, contents.as_bytes())?;
        }
    }
    if prune && dir.exists() {
        for existing in list_files(dir)? {
            let relative = existing
                .strip_prefix(dir)
                .expect("listed under dir")
                .to_string_lossy()
                .replace('\\', "/");
            if !files.contains_key(&relative) {
                changed.push(existing.clone());
                if mode == Mode::Write {
                    fs::remove_file(&existing).map_err(|e| Error::io("removing", &existing, e))?;
                }
            }
        }
    }
    changed.sort();
    Ok(changed)
}

/// Writes `contents` to `path` through a temporary file and a rename, so that readers never
/// see a half-written file.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    fs::write(&temp, contents).map_err(|e| Error::io("writing", &temp, e))?;
    fs::rename(&temp, path).map_err(|e| {
        let _ = fs::remove_file(&temp);
        Error::io("writing", path, e)
    })
}

fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        let entries = fs::read_dir(&folder).map_err(|e| Error::io("listing", &folder, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &folder, e))?;
            let path = entry.path();
            let name = entry.file_name();
            if name == "__pycache__" || name.to_string_lossy().ends_with(".egg-info") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escaping_paths() {
        for bad in ["../x.py", "/etc/passwd", "a/../../b", "", "./a"] {
            assert!(safe_relative_path(bad).is_err(), "{bad}");
        }
        assert!(safe_relative_path("a/b_pb2.py").is_ok());
    }

    #[test]
    fn check_mode_reports_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("a/b.txt".to_owned(), "hello".to_owned());
        let stale = sync_dir(dir.path(), &files, Mode::Check, true).unwrap();
        assert_eq!(stale, vec![dir.path().join("a/b.txt")]);
        assert!(!dir.path().join("a/b.txt").exists());
        sync_dir(dir.path(), &files, Mode::Write, true).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("a/b.txt")).unwrap(),
            "hello"
        );
        fs::write(dir.path().join("extra.txt"), "x").unwrap();
        let stale = sync_dir(dir.path(), &files, Mode::Check, true).unwrap();
        assert_eq!(stale, vec![dir.path().join("extra.txt")]);
    }

    #[test]
    fn a_bad_path_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("a.txt".to_owned(), "ok".to_owned());
        files.insert("../escape.txt".to_owned(), "no".to_owned());
        let err = sync_dir(dir.path(), &files, Mode::Write, false).unwrap_err();
        assert!(err.to_string().contains("../escape.txt"), "{err}");
        assert!(!dir.path().join("a.txt").exists());
    }
}
