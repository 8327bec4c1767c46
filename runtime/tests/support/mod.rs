//! Shared by the integration tests: an `mlbridge serve` process listening on a port chosen
//! at run time, killed when dropped.
// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use mlbridge::Client;

/// An engine process, killed on drop.
pub(crate) struct Engine {
    /// The process (a test may signal or kill it).
    pub(crate) child: Child,
    /// Where it listens (`127.0.0.1:<port>`).
    pub(crate) address: String,
}

impl Engine {
    /// `mlbridge serve --listen 127.0.0.1:0` with `extra` flags, started and ready.
    pub(crate) fn start(extra: &[&str]) -> Engine {
        Engine::spawn(Engine::command(extra))
    }

    /// The command [`Engine::start`] runs, for tests that add to it.
    pub(crate) fn command(extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mlbridge"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra);
        command
    }

    /// Runs `command` and waits for the engine's ready line.
    pub(crate) fn spawn(mut command: Command) -> Engine {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mlbridge");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix(mlbridge::ENGINE_READY_PREFIX)
            .unwrap_or_else(|| panic!("no ready line, got {line:?}"))
            .to_owned();
        Engine { child, address }
    }

    /// A client connected to the engine.
    pub(crate) async fn client(&self) -> Client {
        Client::connect(&self.address).await.expect("connect")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub(crate) mod redis;
pub(crate) mod workers;
