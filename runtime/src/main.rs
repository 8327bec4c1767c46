//! `mlbridge`: the engine binary. `mlbridge serve --listen ADDR` serves `MLBridge`.

use std::io::Write;

use clap::{Parser, Subcommand};
use mlbridge::{Engine, ListenAddr};

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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen } => {
            let engine = Engine::new();
            mlbridge::serve(
                engine,
                &listen,
                |bound| {
                    // Exactly one line on stdout, once connections are accepted: scripts and
                    // tests wait for it to learn the address.
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "mlbridge engine listening on {bound}");
                    let _ = stdout.flush();
                },
                shutdown_signal(),
            )
            .await?;
        }
    }
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
