//! Generates the `mlbridge.v1` messages, clients and servers into `OUT_DIR` with the same
//! settings `cargo xtask codegen` uses for `generated/rust`.

fn main() {
    mlbridge_codegen::configure()
        .include("../../proto")
        .server_default_stubs(true)
        .compile(&["../../proto/ml_bridge.proto"])
        .unwrap_or_else(|err| panic!("mlbridge-codegen: {err}"));
}
