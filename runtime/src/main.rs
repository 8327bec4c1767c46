//! `mlbridge`: the engine binary. `mlbridge serve --listen ADDR` serves `MLBridge`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mlbridge::state::Limits;
use mlbridge::{Engine, ListenAddr, WorkerPoolConfig};

/// The mlbridge engine.
#[derive(Debug, Parser)]
#[command(name = "mlbridge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the MLBridge gRPC API until SIGTERM or Ctrl-C.
    Serve {
        /// IP:PORT (port 0 picks a free port) or unix:PATH.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: ListenAddr,
        #[command(flatten)]
        limits: LimitArgs,
        /// Where session state lives: `memory` (this process; the default) or
        /// `redis://HOST:PORT[/DB]`, shared by every engine started with the same URL.
        #[arg(
            long,
            default_value = "memory",
            value_name = "memory|redis://HOST:PORT[/DB]"
        )]
        state: String,
        /// Serve without the built-in host tools (`add`, `echo`, `count`, ...).
        #[arg(long)]
        no_builtin_tools: bool,
        #[command(flatten)]
        workers: WorkerArgs,
        /// Shut down, as on SIGTERM, when stdin reaches end of file: a parent that keeps
        /// the engine's stdin open (e.g. Python's `mlbridge.Engine.start`) takes the engine
        /// with it however it exits, even when it is killed.
        #[arg(long)]
        stop_on_stdin_close: bool,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        telemetry: TelemetryArgs,
        /// Access control: `required` checks the bearer token of every call (sessions are
        /// created without one and answer their owner token). Default: `required`
        /// unless the engine listens on loopback or a Unix socket; `off` is refused on
        /// any other address.
        #[arg(long, value_enum)]
        auth: Option<AuthArg>,
    },
}

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthArg {
    Required,
    Off,
}

/// The access control mode for an engine listening on `listen`.
fn auth_mode(
    listen: &ListenAddr,
    asked: Option<AuthArg>,
) -> anyhow::Result<mlbridge::auth::AuthMode> {
    use mlbridge::auth::AuthMode;
    let local = match listen {
        ListenAddr::Unix(_) => true,
        ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
    };
    match (asked, local) {
        (Some(AuthArg::Required), _) | (None, false) => Ok(AuthMode::Required),
        (Some(AuthArg::Off), true) | (None, true) => Ok(AuthMode::Off),
        (Some(AuthArg::Off), false) => anyhow::bail!(
            "--auth off is allowed only on loopback or a Unix socket, not on `{listen}`: \
             any host that reaches it could use every session"
        ),
    }
}

/// TLS on the engine's listener (workers and callback servers stay on loopback or Unix
/// sockets, without TLS).
#[derive(Debug, Args)]
struct TlsArgs {
    /// Serve over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate that chains to this CA (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    fn options(&self) -> anyhow::Result<mlbridge::ServeOptions> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("{flag} {}: cannot read: {e}", path.display()))
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(mlbridge::ServerTls {
                cert_pem: read("--tls-cert", cert)?,
                key_pem: read("--tls-key", key)?,
                client_ca_pem: self
                    .tls_client_ca
                    .as_ref()
                    .map(|ca| read("--tls-client-ca", ca))
                    .transpose()?,
            }),
            _ => None,
        };
        Ok(mlbridge::ServeOptions {
            tls,
            ..Default::default()
        })
    }
}

/// Logs, traces and metrics.
#[derive(Debug, Args)]
struct TelemetryArgs {
    /// Log lines on stderr: `text`, or `json` (one object per line, with trace and span ids).
    #[arg(long, default_value = "text")]
    log_format: mlbridge::telemetry::LogFormat,
    /// Which log lines: a level (`warn`, `info`, `debug`: one line per RPC) or a RUST_LOG-style
    /// filter (`mlbridge_engine=debug,warn`) [default: $RUST_LOG, else info].
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Export spans over OTLP/gRPC to this collector (e.g. http://127.0.0.1:4317)
    /// [default: $OTEL_EXPORTER_OTLP_ENDPOINT, else no export].
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks
    /// a free port, printed on stderr). Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// The pool of Python workers that runs framework operations and Python tools.
#[derive(Debug, Args)]
struct WorkerArgs {
    /// Python workers to run (0: none; framework operations then fail with
    /// WORKER_UNAVAILABLE).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Python interpreter for the workers [default: $MLBRIDGE_PYTHON, else python3].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Adapter module every worker loads (e.g. mlbridge_adapters.dspy); repeatable.
    /// Default: every adapter the workers find.
    #[arg(long = "adapter", value_name = "MODULE")]
    adapters: Vec<String>,
    /// Seconds a worker may take to start and import its frameworks.
    #[arg(long, default_value_t = 60)]
    worker_startup_timeout_secs: u64,
    /// Seconds one framework operation or worker tool call may run.
    #[arg(long, default_value_t = 300)]
    operation_timeout_secs: u64,
    /// Let workers started elsewhere attach (`python -m mlbridge.worker --connect ADDRESS
    /// --token-file FILE`) when they present the token in FILE (at least 16 characters;
    /// surrounding whitespace is ignored). They must serve the same adapters as the other
    /// workers. With it, --workers may be 0: the engine then serves what attached workers
    /// serve.
    #[arg(long, value_name = "FILE")]
    attach_token_file: Option<PathBuf>,
    /// Attached workers at most at once.
    #[arg(long, default_value_t = mlbridge::workers::DEFAULT_MAX_ATTACHED)]
    max_attached_workers: usize,
}

impl WorkerArgs {
    fn config(&self, limits: &Limits) -> anyhow::Result<WorkerPoolConfig> {
        let mut config = WorkerPoolConfig::new(self.workers)
            .startup_timeout(Duration::from_secs(self.worker_startup_timeout_secs))
            .operation_timeout(Duration::from_secs(self.operation_timeout_secs))
            .max_pinned_sessions(limits.max_sessions)
            .max_attached(self.max_attached_workers);
        if let Some(path) = &self.attach_token_file {
            let token = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("--attach-token-file {}: cannot read: {e}", path.display())
            })?;
            config = config.attach_token(token.trim());
        }
        if let Some(python) = &self.python {
            config = config.python(python);
        }
        for adapter in &self.adapters {
            config = config.adapter(adapter);
        }
        Ok(config)
    }

    /// Whether the engine runs a worker pool: spawned workers, attached ones, or both.
    fn pool(&self) -> bool {
        self.workers > 0 || self.attach_token_file.is_some()
    }
}

/// Limits that bound the engine's memory whatever clients send.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Memory one session's variables, history and change ring may hold, by encoded size
    /// (e.g. 512MiB, 2GiB, or plain bytes). When a write would go over, the session's
    /// oldest history and change-ring entries are dropped; a write that still does not fit
    /// fails with MEMORY_BUDGET_EXCEEDED.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "512MiB")]
    session_memory: usize,
    /// Memory all sessions together may hold, counted the same way. Keep it well under the
    /// machine's memory.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "2GiB")]
    engine_memory: usize,
    /// Values at least this large are validated on a blocking thread, away from the
    /// threads that serve requests.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, default_value = "256KiB")]
    blocking_validation: usize,
    /// Live sessions at most.
    #[arg(long, default_value_t = Limits::default().max_sessions)]
    max_sessions: usize,
    /// Variables per session at most.
    #[arg(long, default_value_t = Limits::default().max_variables_per_session)]
    max_variables: usize,
    /// Largest encoded variable value, in bytes.
    #[arg(long, default_value_t = Limits::default().max_value_bytes)]
    max_value_bytes: usize,
    /// History entries kept per variable.
    #[arg(long, default_value_t = Limits::default().history_per_variable)]
    history: usize,
    /// Changes kept per session so that watchers can resume.
    #[arg(long, default_value_t = Limits::default().retained_changes)]
    retained_changes: usize,
    /// Changes a watcher may fall behind before it is cut off with WATCH_LAGGED.
    #[arg(long, default_value_t = Limits::default().watch_buffer)]
    watch_buffer: usize,
    /// Open watch streams per session at most.
    #[arg(long, default_value_t = Limits::default().max_watchers_per_session)]
    max_watchers: usize,
    /// Writes per SetVariables call at most.
    #[arg(long, default_value_t = Limits::default().max_writes_per_batch)]
    max_writes_per_batch: usize,
    /// Session inactivity timeout when the client names none, in seconds.
    #[arg(long, default_value_t = Limits::default().default_ttl.as_secs())]
    default_ttl_secs: u64,
    /// How often expired sessions are removed, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    sweep_interval_ms: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            session_memory_bytes: self.session_memory,
            engine_memory_bytes: self.engine_memory,
            blocking_validation_bytes: self.blocking_validation,
            max_sessions: self.max_sessions,
            max_variables_per_session: self.max_variables,
            max_value_bytes: self.max_value_bytes,
            history_per_variable: self.history,
            retained_changes: self.retained_changes,
            watch_buffer: self.watch_buffer,
            max_watchers_per_session: self.max_watchers,
            max_writes_per_batch: self.max_writes_per_batch,
            default_ttl: Duration::from_secs(self.default_ttl_secs),
            ..Limits::default()
        }
    }
}

/// A size in bytes: a number, optionally followed by a unit (B, KiB, MiB, GiB, TiB, or
/// K, M, G, T, KB, MB, GB, TB as the same powers of 1024).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: use e.g. 512MiB, 2GiB or 1048576"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    number
        .checked_mul(1usize << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            limits: limit_args,
            state,
            no_builtin_tools,
            workers: worker_args,
            stop_on_stdin_close,
            tls,
            telemetry,
            auth,
        } => {
            let auth = auth_mode(&listen, auth)?;
            let mut serve_options = tls.options()?;
            // Health turns NOT_SERVING the moment a signal arrives, before the workers stop.
            let health = mlbridge::listen::Health::new();
            serve_options.health = Some(health.clone());
            let telemetry_guard =
                mlbridge::telemetry::init(&mlbridge::telemetry::TelemetryConfig {
                    log_format: telemetry.log_format,
                    log_filter: telemetry.log_level.clone(),
                    otlp_endpoint: telemetry.otlp_endpoint.clone(),
                })
                .map_err(|e| anyhow::anyhow!(e))?;
            // Listening for signals starts now, before anything is served: a signal that
            // arrives early still shuts the engine down cleanly.
            let mut signals = Signals::new(stop_on_stdin_close);
            let limits = limit_args.limits();
            if auth == mlbridge::auth::AuthMode::Off {
                // Said at start-up, so that nobody runs an open engine unknowingly (a log
                // line, so that JSON logs stay JSON).
                tracing::warn!(
                    "access control is off (--auth off): every client of {listen} can use \
                     every session"
                );
            }
            let mut builder = Engine::builder().limits(limits.clone()).auth(auth);
            match state.as_str() {
                "memory" => {}
                url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                    let backend = mlbridge::state::RedisBackend::connect(url, limits.clone())
                        .await
                        .map_err(|e| anyhow::anyhow!("--state {url}: {}", e.message))?;
                    builder = builder.state(std::sync::Arc::new(backend));
                }
                other => anyhow::bail!(
                    "--state {other:?}: expected `memory` or `redis://HOST:PORT[/DB]`"
                ),
            }
            if !no_builtin_tools {
                for tool in mlbridge::builtin_tools::builtin_tools() {
                    builder = builder.tool(tool);
                }
            }
            // Workers are ready before the engine listens, so that its listening line means
            // framework operations can run.
            let pool = if worker_args.pool() {
                let mut config = worker_args.config(&limits)?;
                if let Some(endpoint) = &telemetry.otlp_endpoint {
                    // Workers export their spans where the engine exports its own.
                    config = config.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
                }
                let starting = config.start();
                let pool = tokio::select! {
                    pool = starting => pool.map_err(|e| anyhow::anyhow!("{}", e.message))?,
                    () = signals.recv() => return Ok(()),
                };
                builder = builder.workers(pool.clone());
                Some(pool)
            } else {
                None
            };
            let engine = builder.build();
            let _metrics = match telemetry.metrics_listen {
                Some(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr).await?;
                    let bound = listener.local_addr()?;
                    tracing::info!(
                        "{}{bound}/metrics",
                        mlbridge::telemetry::metrics::METRICS_READY_PREFIX
                    );
                    let engine = engine.clone();
                    Some(tokio::spawn(async move {
                        mlbridge::telemetry::metrics::serve_metrics(
                            listener,
                            engine,
                            std::future::pending(),
                        )
                        .await;
                    }))
                }
                None => None,
            };
            let _sweeper = engine
                .spawn_expiry_sweeper(Duration::from_millis(limit_args.sweep_interval_ms.max(1)));
            // On a signal, stop the workers first: calls running on them then fail at once
            // instead of holding up the engine's graceful shutdown.
            let stopping = pool.clone();
            let shutdown = async move {
                signals.recv().await;
                health.set_not_serving().await;
                if let Some(pool) = stopping {
                    pool.shutdown().await;
                }
            };
            let served = mlbridge::serve_with(
                engine,
                &listen,
                &serve_options,
                |bound| {
                    if let Some(pool) = &pool {
                        pool.set_engine_address(bound);
                    }
                    // Exactly one line on stdout, once connections are accepted: scripts and
                    // tests wait for it to learn the address.
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{}{bound}", mlbridge::ENGINE_READY_PREFIX);
                    let _ = stdout.flush();
                },
                shutdown,
            )
            .await;
            if let Some(pool) = pool {
                pool.shutdown().await;
            }
            telemetry_guard.shutdown();
            served?;
        }
    }
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C), handled from the moment this is made, and with
/// `--stop-on-stdin-close` the end of stdin.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    /// Closed (never sent on) when stdin reaches its end.
    stdin_closed: Option<tokio::sync::mpsc::Receiver<()>>,
}

impl Signals {
    fn new(stop_on_stdin_close: bool) -> Self {
        let stdin_closed = stop_on_stdin_close.then(|| {
            let (closed, receiver) = tokio::sync::mpsc::channel::<()>(1);
            // A plain thread, not tokio's stdin: a read that never ends must not hold up
            // the runtime's shutdown. Whatever arrives on stdin is read and dropped.
            std::thread::spawn(move || {
                let _closed = closed;
                let mut sink = [0u8; 1024];
                let mut stdin = std::io::stdin().lock();
                while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
            });
            receiver
        });
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).expect("install SIGTERM handler"),
                interrupt: signal(SignalKind::interrupt()).expect("install SIGINT handler"),
                stdin_closed,
            }
        }
        #[cfg(not(unix))]
        Signals { stdin_closed }
    }

    /// Waits for the next shutdown signal (or for stdin to close).
    async fn recv(&mut self) {
        let stdin_closed = async {
            match &mut self.stdin_closed {
                Some(receiver) => while receiver.recv().await.is_some() {},
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
            () = stdin_closed => {}
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = stdin_closed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AuthArg, ListenAddr, auth_mode, parse_bytes};

    #[test]
    fn auth_is_required_beyond_this_host() {
        use mlbridge::auth::AuthMode;
        let at = |text: &str| text.parse::<ListenAddr>().unwrap();
        assert_eq!(auth_mode(&at("127.0.0.1:0"), None).unwrap(), AuthMode::Off);
        assert_eq!(auth_mode(&at("unix:/tmp/x"), None).unwrap(), AuthMode::Off);
        assert_eq!(
            auth_mode(&at("0.0.0.0:0"), None).unwrap(),
            AuthMode::Required
        );
        assert!(auth_mode(&at("0.0.0.0:0"), Some(AuthArg::Off)).is_err());
        assert_eq!(
            auth_mode(&at("127.0.0.1:0"), Some(AuthArg::Required)).unwrap(),
            AuthMode::Required
        );
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("256k"), Ok(256 << 10));
        assert_eq!(parse_bytes("64 MB"), Ok(64 << 20));
        assert!(parse_bytes("MiB").is_err());
        assert!(
            parse_bytes("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(
            parse_bytes("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }
}
