//! The project's Python environment: a `.venv` at the workspace root, created from
//! `tests/requirements.txt` plus the project's own packages, rebuilt only when they change.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

/// The workspace's virtual environment.
pub(crate) struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The venv's Python interpreter.
    pub(crate) fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    /// The venv's `bin` folder, to put first on `PATH` (protoc plugins live there).
    pub(crate) fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// A command running the venv's Python with the venv's `bin` first on `PATH`.
    pub(crate) fn command(&self, args: &[&str], dir: &Path) -> Command {
        let mut command = run::cmd(self.python(), args, dir);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.bin()];
        paths.extend(std::env::split_paths(&path));
        command.env("PATH", std::env::join_paths(paths).expect("valid PATH"));
        command.env("PYTHONDONTWRITEBYTECODE", "1");
        command
    }
}

/// Python packages of this repository, installed in editable mode.
const LOCAL_PACKAGES: &[&str] = &["generated/python", "runtime/python"];

/// Creates or refreshes `.venv`, returning it once it is ready.
pub(crate) fn ensure() -> Result<Venv> {
    let root = crate::root();
    let venv = Venv {
        dir: root.join(".venv"),
    };
    let requirements = std::fs::read_to_string(root.join("tests/requirements.txt"))
        .context("reading tests/requirements.txt")?;
    let wanted = format!("{requirements}\n# local (editable_mode=compat): {LOCAL_PACKAGES:?}\n");
    let stamp = venv.dir.join(".mlbridge-stamp");
    if venv.python().exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return Ok(venv);
    }
    crate::step("setting up the Python environment (.venv)");
    if !venv.python().exists() {
        create(&root, &venv.dir)?;
    }
    run::status(&mut venv.command(
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "tests/requirements.txt",
        ],
        &root,
    ))?;
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ];
    for package in LOCAL_PACKAGES {
        args.extend(["-e", package]);
    }
    run::status(&mut venv.command(&args, &root))?;
    std::fs::write(&stamp, wanted).context("writing the .venv stamp")?;
    Ok(venv)
}

fn create(root: &Path, dir: &Path) -> Result<()> {
    let python = find_python()?;
    let attempt = run::output(&mut run::cmd(
        &python,
        &["-m", "venv", &dir.to_string_lossy()],
        root,
    ));
    if attempt.is_ok() {
        return Ok(());
    }
    // Debian's python3 ships venv separately; install it when we can (CI runs as root).
    if which("apt-get").is_some() {
        println!("python3 -m venv failed; installing python3-venv with apt-get");
        run::status(&mut run::cmd("apt-get", &["update", "-qq"], root))?;
        run::status(&mut run::cmd(
            "apt-get",
            &["install", "-y", "-qq", "python3-venv"],
            root,
        ))?;
        run::output(&mut run::cmd(
            &python,
            &["-m", "venv", &dir.to_string_lossy()],
            root,
        ))?;
        return Ok(());
    }
    attempt.map(|_| ())
}

fn find_python() -> Result<String> {
    for candidate in ["python3", "python"] {
        if let Some(path) = which(candidate) {
            return Ok(path.to_string_lossy().into_owned());
        }
    }
    bail!("no python3 on PATH: install Python 3.10 or newer")
}

/// The first `name` on `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
