//! The floors of `cargo xtask bench`, measured in every run beside the project's figures:
//! the bare loopback round trip between two processes (TCP and Unix socket, a one-byte
//! ping-pong on blocking sockets), a minimal tonic unary echo, and a minimal Python grpcio
//! unary echo (`tests/bench/echo_server.py`), each called from a Rust client in alternating
//! rounds. Prints one JSON object per measurement on stdout.
//!
//! Usage:
//!   bench_floors serve
//!     serves a TCP and a Unix-socket ping-pong and the tonic echo (the `Callback`
//!     service; the response carries the request's metadata back), prints
//!     `FLOORS <tcp port> <unix socket path> <tonic port>` and stops when stdin closes.
//!   bench_floors measure TCP_PORT UNIX_PATH TONIC_ADDR GRPCIO_ADDR
//!     times the four round trips against such servers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use mlbridge_proto::mlbridge::v1 as pb;
use mlbridge_proto::mlbridge::v1::callback_server::{Callback, CallbackServer};
use tokio_stream::StreamExt;

#[path = "support/bench.rs"]
mod support;
use support::{echo, echo_client, report};

/// Samples per measurement, taken in `ROUNDS` alternating rounds.
const SAMPLES: usize = 3000;
const ROUNDS: usize = 10;
const WARMUP: usize = 200;

/// The tonic echo: the least a Rust gRPC server can do for a unary call.
struct Echo;

#[tonic::async_trait]
impl Callback for Echo {
    async fn execute_callback(
        &self,
        request: tonic::Request<pb::ExecuteCallbackRequest>,
    ) -> Result<tonic::Response<pb::ExecuteCallbackResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ExecuteCallbackResponse {
            result: None,
            metadata: request.into_inner().metadata,
        }))
    }
}

/// Answers each byte with itself until the peer hangs up.
fn pong(mut stream: impl Read + Write) {
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).is_ok() {
        if stream.write_all(&byte).is_err() {
            return;
        }
    }
}

async fn serve() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind the TCP ping-pong");
    let tcp_port = tcp.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in tcp.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            std::thread::spawn(move || pong(stream));
        }
    });
    let folder = tempfile_folder();
    let path = folder.join("pingpong.sock");
    let unix = UnixListener::bind(&path).expect("bind the Unix ping-pong");
    std::thread::spawn(move || {
        for stream in unix.incoming().flatten() {
            std::thread::spawn(move || pong(stream));
        }
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the tonic echo");
    let tonic_port = listener.local_addr().expect("address").port();
    println!("FLOORS {tcp_port} {} {tonic_port}", path.display());
    // Served like the engine serves: TCP_NODELAY on every accepted connection.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    });
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await;
    };
    tonic::transport::Server::builder()
        .add_service(CallbackServer::new(Echo))
        .serve_with_incoming_shutdown(incoming, stdin_closed)
        .await
        .expect("serve the tonic echo");
    let _ = std::fs::remove_dir_all(folder);
}

/// A fresh private folder for the Unix socket.
fn tempfile_folder() -> std::path::PathBuf {
    let folder = std::env::temp_dir().join(format!("mlbridge-floors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).expect("create the socket folder");
    folder
}

fn ping(stream: &mut (impl Read + Write)) {
    let mut byte = [7u8; 1];
    stream.write_all(&byte).expect("ping");
    stream.read_exact(&mut byte).expect("pong");
}

async fn measure(tcp_port: &str, unix_path: &str, tonic: &str, grpcio: &str) {
    let mut tcp = TcpStream::connect(("127.0.0.1", tcp_port.parse::<u16>().expect("a port")))
        .expect("connect to the TCP ping-pong");
    tcp.set_nodelay(true).expect("nodelay");
    let mut unix = UnixStream::connect(unix_path).expect("connect to the Unix ping-pong");
    let (tonic, grpcio) = (echo_client(tonic).await, echo_client(grpcio).await);
    for _ in 0..WARMUP {
        ping(&mut tcp);
        ping(&mut unix);
        echo(&tonic).await;
        echo(&grpcio).await;
    }
    const KINDS: usize = 4;
    let mut samples: [Vec<Duration>; KINDS] = Default::default();
    for round in 0..ROUNDS {
        // Rotate which measurement goes first.
        for k in 0..KINDS {
            let which = (round + k) % KINDS;
            for _ in 0..SAMPLES / ROUNDS {
                let start = Instant::now();
                match which {
                    0 => ping(&mut tcp),
                    1 => ping(&mut unix),
                    2 => echo(&tonic).await,
                    _ => echo(&grpcio).await,
                }
                samples[which].push(start.elapsed());
            }
        }
    }
    let [tcp_samples, unix_samples, tonic_samples, grpcio_samples] = &mut samples;
    report("loopback round trip, 1 byte", "tcp", tcp_samples, None);
    report(
        "loopback round trip, 1 byte",
        "unix socket",
        unix_samples,
        None,
    );
    report(
        "unary echo (Rust client)",
        "rust tonic",
        tonic_samples,
        None,
    );
    report(
        "unary echo (Rust client)",
        "python grpcio",
        grpcio_samples,
        None,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve"] => serve().await,
        ["measure", tcp, unix, tonic, grpcio] => measure(tcp, unix, tonic, grpcio).await,
        _ => {
            eprintln!(
                "usage: bench_floors serve\n       bench_floors measure TCP_PORT UNIX_PATH TONIC_ADDR GRPCIO_ADDR"
            );
            std::process::exit(2);
        }
    }
}
