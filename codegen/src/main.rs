//! `mlbridge-codegen`: the protoc-like command line over the generator library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mlbridge_codegen::{Mode, ProtobufVersion, configure, output};

/// Generate typed Rust and Python code from .proto files (no protoc needed).
#[derive(Debug, Parser)]
#[command(name = "mlbridge-codegen", version, about)]
struct Cli {
    /// Folder to search for imports; repeatable. Defaults to the current folder.
    #[arg(short = 'I', long = "proto-path", value_name = "DIR")]
    proto_path: Vec<PathBuf>,
    /// Write Python modules (_pb2.py, _pb2.pyi, _pb2_grpc.py, _pb2_grpc.pyi) here.
    #[arg(long, value_name = "DIR")]
    python_out: Option<PathBuf>,
    /// Write Rust modules (prost messages, tonic clients and servers) here.
    #[arg(long, value_name = "DIR")]
    rust_out: Option<PathBuf>,
    /// Place the Python modules inside this package, with imports that resolve there.
    #[arg(long, value_name = "NAME")]
    python_package: Option<String>,
    /// Protobuf runtime version the _pb2.py files require.
    #[arg(long, value_name = "X.Y.Z", default_value = ProtobufVersion::DEFAULT)]
    protobuf_version: String,
    /// grpcio version the _pb2_grpc.py files require (their import fails under an older one).
    #[arg(long, value_name = "X.Y.Z", default_value = ProtobufVersion::GRPC_DEFAULT)]
    grpc_version: String,
    /// Folder of framework adapter manifests (*.toml): adds typed Rust clients
    /// (mlbridge_adapters.rs) and the Python adapter package to the outputs.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,
    /// Python package of the code generated from manifests.
    #[arg(long, value_name = "NAME", default_value = mlbridge_codegen::DEFAULT_ADAPTERS_PACKAGE)]
    adapters_package: String,
    /// Write nothing; exit 1 if any output file would change.
    #[arg(long)]
    check: bool,
    /// The .proto files, as paths under an include folder or names relative to one.
    /// Optional when --manifests is given.
    #[arg(required_unless_present = "manifests", value_name = "PROTO")]
    protos: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mlbridge-codegen: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.python_out.is_none() && cli.rust_out.is_none() {
        anyhow::bail!("nothing to do: give --python-out DIR and/or --rust-out DIR");
    }
    let includes = if cli.proto_path.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        cli.proto_path
    };
    let mut builder = configure()
        .rust(cli.rust_out.is_some())
        .python(cli.python_out.is_some());
    for include in includes {
        builder = builder.include(include);
    }
    if let Some(package) = cli.python_package {
        builder = builder.python_package(package);
    }
    builder = builder.protobuf_version(ProtobufVersion::parse(&cli.protobuf_version)?);
    builder = builder.grpc_version(ProtobufVersion::parse_setting(
        "grpc_version",
        &cli.grpc_version,
    )?);
    if let Some(manifests) = cli.manifests {
        builder = builder
            .manifests(manifests)
            .adapters_package(cli.adapters_package);
    }
    let generated = builder.generate(&cli.protos)?;
    let mode = if cli.check { Mode::Check } else { Mode::Write };
    let mut changed = Vec::new();
    if let Some(dir) = &cli.rust_out {
        changed.extend(output::sync_dir(dir, &generated.rust, mode, false)?);
    }
    if let Some(dir) = &cli.python_out {
        changed.extend(output::sync_dir(dir, &generated.python, mode, false)?);
    }
    if cli.check && !changed.is_empty() {
        for path in &changed {
            eprintln!("stale: {}", path.display());
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
