//! Memory bounded by bytes, against a real `mlbridge serve` process: 40 writes of 16 MiB to
//! one variable leave the engine's resident memory (VmRSS from `/proc/<pid>/status`) at a
//! few times one value, while the latest value, the retained history and an open watcher
//! stay correct.

use mlbridge::{BridgeError, ErrorKind};
use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, VariableType as T, VariableUpdateKind, value::Kind,
};
use tokio_stream::StreamExt;

mod support;
use support::Engine;

const MIB: usize = 1024 * 1024;
const VALUE_BYTES: usize = 16 * MIB;
const WRITES: u64 = 40;

/// The value written as version `version`: every byte is the version's low byte, so a
/// reader can tell exactly which version it holds.
fn blob(version: u64) -> pb::Value {
    pb::Value {
        kind: Some(Kind::BytesValue(vec![version as u8; VALUE_BYTES].into())),
    }
}

/// The version whose blob `value` is, or a description of what is wrong with it.
fn blob_version(value: Option<&pb::Value>) -> Result<u8, String> {
    match value.and_then(|v| v.kind.as_ref()) {
        Some(Kind::BytesValue(bytes)) if bytes.len() == VALUE_BYTES => {
            let first = bytes[0];
            if bytes.iter().all(|b| *b == first) {
                Ok(first)
            } else {
                Err("a blob mixing two versions".into())
            }
        }
        Some(Kind::BytesValue(bytes)) => Err(format!("a blob of {} bytes", bytes.len())),
        other => Err(format!("not a blob: {:?}", other.map(|_| "other kind"))),
    }
}

/// (VmRSS, VmHWM) of a process, in bytes.
fn resident(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let field = |name: &str| -> usize {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
        let kib: usize = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("a number of kB");
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the watcher saw: the versions of every update, in order, and how it ended.
#[derive(Debug, Default)]
struct Seen {
    versions: Vec<u64>,
    ended: Option<BridgeError>,
    wrong: Vec<String>,
}

#[tokio::test]
async fn forty_writes_of_16_mib_keep_the_engine_at_a_few_values() {
    // A session budget of four values: the current one, the one it replaced (which the
    // last update carries) and older versions as far as they fit.
    //
    // glibc's malloc keeps freed buffers of this size in its per-thread arenas (its mmap
    // threshold grows to 32 MiB), which would show up as resident memory the engine no
    // longer holds; a fixed threshold, as recommended in the README for large values, lets
    // VmRSS show what the engine holds. Other allocators ignore the variable.
    let mut command = Engine::command(&["--session-memory", "64MiB"]);
    command.env("MALLOC_MMAP_THRESHOLD_", "1048576");
    let engine = Engine::spawn(command);
    let pid = engine.child.id();
    let session = engine.client().await.session().await.unwrap();
    session
        .register("blob", T::Bytes, blob(1), Constraints::default())
        .await
        .unwrap();
    let (before, _) = resident(pid);

    // A watcher that reads every update as it comes and checks each value against its
    // version, until the stream ends (with an error) or the writes are done.
    let mut watch = Box::pin(session.watch(&["blob"], false, None).await.unwrap());
    let synced = watch.next().await.unwrap().unwrap();
    assert_eq!(synced.kind, VariableUpdateKind::Synced as i32);
    let watcher = tokio::spawn(async move {
        let mut seen = Seen::default();
        while let Some(update) = watch.next().await {
            match update {
                Ok(update) => {
                    let variable = update.variable.as_ref().expect("a variable");
                    match blob_version(variable.value.as_ref()) {
                        Ok(marker) if u64::from(marker) == variable.version % 256 => {}
                        Ok(marker) => seen.wrong.push(format!(
                            "version {} carries the blob of version {marker}",
                            variable.version
                        )),
                        Err(wrong) => seen
                            .wrong
                            .push(format!("version {}: {wrong}", variable.version)),
                    }
                    match blob_version(update.old_value.as_ref()) {
                        Ok(marker) if u64::from(marker) == variable.version - 1 => {}
                        other => seen.wrong.push(format!(
                            "old value of version {}: {other:?}",
                            variable.version
                        )),
                    }
                    seen.versions.push(variable.version);
                    if variable.version == WRITES + 1 {
                        break;
                    }
                }
                Err(error) => {
                    seen.ended = Some(error);
                    break;
                }
            }
        }
        seen
    });

    let mut peak_rss = 0;
    for version in 2..=WRITES + 1 {
        let variable = session.set("blob", blob(version)).await.unwrap();
        assert_eq!(variable.version, version);
        peak_rss = peak_rss.max(resident(pid).0);
    }
    let seen = watcher.await.unwrap();
    let (after, high_water) = resident(pid);

    eprintln!(
        "engine VmRSS: {} MiB before the writes, {} MiB after, {} MiB at most between writes; \
         VmHWM {} MiB; one value is {} MiB",
        before / MIB,
        after / MIB,
        peak_rss / MIB,
        high_water / MIB,
        VALUE_BYTES / MIB
    );

    // The latest value is the last one written.
    let latest = session.get("blob").await.unwrap();
    assert_eq!(latest.version, WRITES + 1);
    assert_eq!(blob_version(latest.value.as_ref()), Ok((WRITES + 1) as u8));

    // The history is the newest versions, consecutive, each with its own value, and no more
    // than the budget holds.
    let history = session.history("blob", 0).await.unwrap();
    assert!(
        !history.is_empty() && history.len() <= 4,
        "{} history entries",
        history.len()
    );
    for (i, entry) in history.iter().enumerate() {
        assert_eq!(entry.version, WRITES + 1 - i as u64);
        assert_eq!(
            blob_version(entry.value.as_ref()),
            Ok(entry.version as u8),
            "history entry {}",
            entry.version
        );
    }

    // The watcher saw every change in order, or stopped with a clear lag error after a
    // prefix of them; it never saw a wrong value.
    assert!(seen.wrong.is_empty(), "{:?}", seen.wrong);
    let expected: Vec<u64> = (2..2 + seen.versions.len() as u64).collect();
    assert_eq!(seen.versions, expected);
    match &seen.ended {
        None => assert_eq!(seen.versions.len() as u64, WRITES),
        Some(error) => assert_eq!(error.kind, ErrorKind::WatchLagged, "{error}"),
    }

    // A value that cannot fit beside the current one (which its update would carry as the
    // old value) is refused over the wire with the budget's own kind, and changes nothing.
    let too_large = pb::Value {
        kind: Some(Kind::BytesValue(vec![0u8; 48 * MIB].into())),
    };
    let error = session.set("blob", too_large).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::MemoryBudgetExceeded, "{error}");
    assert_eq!(error.context["budget"], "session");
    assert!(error.message.contains("--session-memory"), "{error}");
    assert_eq!(session.get("blob").await.unwrap().version, WRITES + 1);
    assert_eq!(
        session.history("blob", 0).await.unwrap().len(),
        history.len()
    );

    // Resident memory stays at a few values, not the 40 written: the budget holds four,
    // and a write in flight adds its request, its reply and the watcher's update (which
    // carries the new and the old value).
    let bound = 10 * VALUE_BYTES;
    assert!(
        after < bound && peak_rss < bound,
        "engine VmRSS {} MiB after, {} MiB at most, over {} MiB",
        after / MIB,
        peak_rss / MIB,
        bound / MIB
    );
    // Once the writes are answered and the watcher has gone, what stays is the budget's four
    // values and the engine itself: well under five values. (A deadline, not a speed: the
    // engine drops a closed stream's buffers when it notices the stream is gone.)
    drop(session);
    let settled_bound = 5 * VALUE_BYTES;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut settled = resident(pid).0;
    while settled >= settled_bound && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        settled = resident(pid).0;
    }
    eprintln!("engine VmRSS once settled: {} MiB", settled / MIB);
    assert!(
        settled < settled_bound,
        "engine VmRSS {} MiB once settled, over {} MiB (five values)",
        settled / MIB,
        settled_bound / MIB
    );
}
