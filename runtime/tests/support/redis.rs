//! A private `redis-server` for tests: a port chosen at run time, its own temporary
//! directory, append-only persistence with an fsync per write, never the system's Redis.
// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process, killed on drop.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MLBRIDGE_REDIS_SERVER") {
        return path.into();
    }
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = PathBuf::from(dir).join("redis-server");
        if path.exists() {
            return path;
        }
    }
    panic!("redis-server not found: `cargo xtask test` installs it (apt-get install redis-server)")
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub(crate) fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.command(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `kill -9`: nothing is flushed beyond what was already fsynced.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port from the same directory (its append-only file).
    pub(crate) fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Runs one command with a raw RESP exchange; the first reply line without its type
    /// byte, or `None` when the server does not answer.
    pub(crate) fn command(&self, args: &[&str]) -> Option<String> {
        use std::io::{BufRead, BufReader, Write};
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        (&stream).write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).ok()?;
        let line = line.trim_end();
        Some(line.get(1..).unwrap_or("").to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A TCP proxy in front of a Redis server that can lose one reply. Armed, it forwards the
/// next commit (a command that names a request-id key, `:req:`), gives Redis time to run
/// it, then closes that connection without passing the reply on: the ambiguous failure
/// (applied, but the engine cannot know) that a write retried by request id must survive.
pub(crate) struct ReplyDropper {
    port: u16,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplyDropper {
    /// Listens on a free port in front of `redis`.
    pub(crate) async fn start(redis: &RedisServer) -> ReplyDropper {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let armed = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (target, arm, count) = (redis.port, armed.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (arm, count) = (arm.clone(), count.clone());
                tokio::spawn(async move {
                    if let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        relay(client, server, &arm, &count).await;
                    }
                });
            }
        });
        ReplyDropper {
            port,
            armed,
            dropped,
            task,
        }
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Loses the reply to the next commit.
    pub(crate) fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many replies were lost so far.
    pub(crate) fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ReplyDropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection until either side closes, or until an armed commit went up: then
/// nothing more comes down, and both sides are closed once Redis had time to run it.
async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    armed: &std::sync::atomic::AtomicBool,
    dropped: &std::sync::atomic::AtomicUsize,
) {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cut = AtomicBool::new(false);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let commit = buf[..n].windows(5).any(|w| w == b":req:");
            let lose = commit && armed.swap(false, SeqCst);
            if lose {
                cut.store(true, SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
            if lose {
                tokio::time::sleep(Duration::from_millis(200)).await;
                dropped.fetch_add(1, SeqCst);
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cut.load(SeqCst) || client_write.write_all(&buf[..n]).await.is_err() {
                // Waits for `up` to close the connection.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
