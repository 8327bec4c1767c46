//! The client crate stays thin: nothing of the engine, the worker pool or the CLI is in its
//! dependency tree (what `cargo tree -p mlbridge-client` shows).

use std::process::Command;

#[test]
fn the_client_depends_on_no_engine_worker_pool_or_cli() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "mlbridge-client",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "{output:?}");
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"mlbridge-proto"), "{tree}");
    for banned in [
        "mlbridge-engine",
        "mlbridge",
        "mlbridge-macros",
        "clap",
        "regex",
        "uuid",
    ] {
        assert!(
            !crates.contains(&banned),
            "`{banned}` in the client's tree:\n{tree}"
        );
    }
}
