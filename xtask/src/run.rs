//! Running child processes with clear errors that name the command that failed.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Builds a command running in `dir`.
pub(crate) fn cmd(program: impl AsRef<OsStr>, args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    command
}

/// Runs `command` with inherited output; fails naming the command if it fails.
pub(crate) fn status(command: &mut Command) -> Result<()> {
    let shown = describe(command);
    let status = command
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `command`, capturing output; fails with its stderr if it fails.
pub(crate) fn output(command: &mut Command) -> Result<Output> {
    let shown = describe(command);
    let output = command
        .output()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !output.status.success() {
        bail!(
            "`{shown}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The cargo that runs this xtask, so nested builds use the same toolchain.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// An engine process started for a demo or benchmark; stopped (SIGTERM) when dropped.
pub(crate) struct EngineProcess {
    child: std::process::Child,
    /// The address it printed, e.g. `127.0.0.1:40123`.
    pub address: String,
}

impl EngineProcess {
    /// Its process id (to read its memory use from `/proc`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl EngineProcess {
    /// Starts `binary serve --listen 127.0.0.1:0` and waits for its "listening on" line.
    pub(crate) fn start(binary: &Path) -> Result<Self> {
        Self::start_with(binary, &[], None)
    }

    /// Starts the engine with `workers` Python workers run by `python`; the engine reports
    /// its address once every worker is ready.
    pub(crate) fn start_with_workers(binary: &Path, workers: usize, python: &Path) -> Result<Self> {
        Self::start_with(binary, &["--workers", &workers.to_string()], Some(python))
    }

    /// Starts the engine with extra `serve` arguments (telemetry, access control, ...).
    pub(crate) fn start_with_args(binary: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_with(binary, extra, None)
    }

    /// Starts the engine with `extra` flags (and workers run by `python`, when given).
    pub(crate) fn start_with(binary: &Path, extra: &[&str], python: Option<&Path>) -> Result<Self> {
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra);
        if let Some(python) = python {
            command.env("MLBRIDGE_PYTHON", python);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the engine's first line")?;
        let Some(address) = line.trim().strip_prefix(crate::ready::ENGINE_READY_PREFIX) else {
            let _ = child.kill();
            bail!("the engine did not report its address (printed {line:?})");
        };
        Ok(EngineProcess {
            address: address.to_owned(),
            child,
        })
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        // SIGTERM lets the engine shut down cleanly; fall back to SIGKILL.
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A helper process that prints `<prefix><value>` once ready and stops when its stdin
/// closes (killed if it does not).
pub(crate) struct Served {
    child: Child,
    stdin: Option<ChildStdin>,
    /// What followed the prefix on its first line.
    pub(crate) said: String,
}

impl Served {
    pub(crate) fn start(mut command: Command, prefix: &str) -> Result<Self> {
        let shown = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {shown}"))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let mut served = Served {
            child,
            stdin,
            said: String::new(),
        };
        read.with_context(|| format!("reading the first line of {shown}"))?;
        served.said = line
            .trim()
            .strip_prefix(prefix)
            .ok_or_else(|| anyhow!("{shown} printed {line:?}, not `{prefix}...`"))?
            .to_owned();
        Ok(served)
    }

    /// Closes its stdin and waits for it to end.
    pub(crate) fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = wait_for(&mut self.child, Duration::from_secs(10))?;
        if !status.success() {
            bail!("a bench helper process ended with {status}");
        }
        Ok(())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if wait_for(&mut self.child, Duration::from_secs(5)).is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= until {
            bail!("process {} did not stop within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
