//! Python workers for the integration tests: the environment a worker needs, a stand-in
//! builtin adapter, signals to processes, and a worker started elsewhere that attaches
//! itself to an engine (`python -m mlbridge.worker --connect`), killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the runtime crate lives in the workspace")
        .to_owned()
}

/// The interpreter that runs workers: `$MLBRIDGE_PYTHON`, else the workspace's `.venv`.
pub(crate) fn python() -> PathBuf {
    std::env::var_os("MLBRIDGE_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"))
}

/// A hand-written `mlbridge_adapters.builtin.dispatch`, used until the generated one
/// exists in `generated/python`.
const BUILTIN_DISPATCH: &str = r#"
from mlbridge.dispatch import Adapter, HostedTool, OperationSpec, ParameterSpec, ResultSpec
from mlbridge.value_types import Constraints, VariableType

ADAPTER = Adapter(
    framework="builtin",
    implementation="mlbridge.frameworks.builtin",
    description="Operations with no framework behind them.",
    operations=(
        OperationSpec(name="noop", kind="function", call=lambda m, c, a: m.noop(c)),
        OperationSpec(
            name="echo", kind="function", call=lambda m, c, a: m.echo(c, value=a["value"]),
            parameters=(ParameterSpec(name="value", type=VariableType.ANY, required=True, bindable=True),),
            results=(ResultSpec(name="value", type=VariableType.ANY),),
        ),
        OperationSpec(
            name="sleep", kind="function", call=lambda m, c, a: m.sleep(c, seconds=a["seconds"]),
            parameters=(ParameterSpec(name="seconds", type=VariableType.FLOAT, required=True,
                                  constraints=Constraints(min=0.0, max=600.0)),),
            results=(ResultSpec(name="slept", type=VariableType.FLOAT),),
        ),
    ),
    tools=(HostedTool(name="worker_pid", call=lambda m, c, a: m.worker_pid(c), returns=VariableType.INTEGER),),
)
"#;

/// The environment workers need: the interpreter, and a `PYTHONPATH` with the SDK, the
/// generated messages and the adapters (the generated ones when they exist, else the
/// stand-in above). The one place to change when the adapters move.
pub(crate) fn worker_env(command: &mut Command) {
    let root = workspace();
    let generated = root.join("generated/python");
    let mut path = vec![root.join("runtime/python"), generated.clone()];
    if !generated
        .join("mlbridge_adapters/builtin/dispatch.py")
        .exists()
    {
        path.insert(0, stand_in_adapters().to_owned());
    }
    command
        .env("MLBRIDGE_PYTHON", python())
        .env("PYTHONPATH", std::env::join_paths(path).unwrap())
        .env("PYTHONDONTWRITEBYTECODE", "1");
}

pub(crate) fn stand_in_adapters() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("mlbridge-test-adapters-{}", std::process::id()));
        let package = dir.join("mlbridge_adapters/builtin");
        std::fs::create_dir_all(&package).unwrap();
        std::fs::write(dir.join("mlbridge_adapters/__init__.py"), "").unwrap();
        std::fs::write(package.join("__init__.py"), "").unwrap();
        std::fs::write(package.join("dispatch.py"), BUILTIN_DISPATCH).unwrap();
        dir
    })
}

/// Whether process `pid` is gone (or a zombie nobody has reaped yet).
pub(crate) fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

pub(crate) fn wait_gone(pids: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    while pids.iter().any(|&pid| !gone(pid)) {
        assert!(
            Instant::now() < deadline,
            "workers still running after {within:?}: {:?}",
            pids.iter().filter(|&&pid| !gone(pid)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A worker started apart from any engine that attached itself to one
/// (`python -m mlbridge.worker --connect`), killed on drop.
pub(crate) struct Attached {
    pub(crate) child: Child,
    /// The id the engine gave it (`attached-<n>`).
    pub(crate) worker_id: String,
}

impl Attached {
    /// The command that attaches a worker serving the builtin adapter to `engine`,
    /// presenting the token in `token_file`.
    pub(crate) fn command(engine: &str, token_file: &Path) -> Command {
        let mut command = Command::new(python());
        worker_env(&mut command);
        command
            .args(["-m", "mlbridge.worker", "--connect", engine, "--token-file"])
            .arg(token_file)
            .args([
                "--adapter",
                "mlbridge_adapters.builtin",
                "--name",
                "test-host",
            ]);
        command
    }

    /// Runs `command` and waits for the line that says the engine took the worker.
    pub(crate) fn spawn(mut command: Command) -> Attached {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start an attached worker");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let worker_id = line
            .trim()
            .strip_prefix("MLBRIDGE_WORKER_ATTACHED ")
            .unwrap_or_else(|| panic!("the worker did not attach; its stdout said {line:?}"))
            .to_owned();
        Attached { child, worker_id }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file holding a fresh attach token, in `dir`.
pub(crate) fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("attach-token");
    std::fs::write(&path, format!("{token}\n")).expect("write the token file");
    path
}
