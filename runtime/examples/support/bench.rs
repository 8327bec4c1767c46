//! What the benchmark drivers share (each includes this file with `#[path]`): a measurement
//! as one JSON line on stdout, and the unary echo call that is every run's floor.

// Each driver uses its own part of this file.
#![allow(dead_code)]

use std::time::Duration;

use mlbridge::adapters::pb;
use pb::callback_client::CallbackClient;
use tonic::transport::Channel;

/// Prints one measurement: p50 and p99 of `samples` and throughput (`ops_per_sec`, or one
/// call at a time when `None`), plus the engine's memory when measured.
pub(crate) fn report_line(
    name: &str,
    server: &str,
    samples: &mut [Duration],
    ops_per_sec: Option<f64>,
    rss_mib: Option<f64>,
) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    let ops = ops_per_sec.unwrap_or_else(|| {
        samples.len() as f64 / samples.iter().map(Duration::as_secs_f64).sum::<f64>()
    });
    let memory = rss_mib.map_or(String::new(), |m| format!(",\"rss_mib\":{m:.1}"));
    println!(
        "{{\"name\":\"{name}\",\"server\":\"{server}\",\"p50_us\":{:.1},\"p99_us\":{:.1},\"ops_per_sec\":{ops:.0}{memory}}}",
        at(0.5),
        at(0.99),
    );
}

/// [`report_line`] without memory.
pub(crate) fn report(name: &str, server: &str, samples: &mut [Duration], ops_per_sec: Option<f64>) {
    report_line(name, server, samples, ops_per_sec, None);
}

/// A client of an echo server (the `Callback` service), dialled as the engine dials.
pub(crate) async fn echo_client(address: &str) -> CallbackClient<Channel> {
    CallbackClient::new(
        mlbridge::dial::channel(address)
            .await
            .expect("dial an echo"),
    )
}

/// One small unary call to an echo server.
pub(crate) async fn echo(client: &CallbackClient<Channel>) {
    client
        .clone()
        .execute_callback(pb::ExecuteCallbackRequest {
            callback_id: "bench".into(),
            callback_name: "noop".into(),
            session_id: "bench-session".into(),
            ..Default::default()
        })
        .await
        .expect("echo call");
}
