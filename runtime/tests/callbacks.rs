//! Callbacks against a real engine process: a `Callback` server (here in Rust, standing in
//! for the Python SDK's) is registered with `RegisterCallback`, and a Rust program calls it
//! through the engine with `Session::call_callback`: a value, a forwarded failure, a
//! deadline that cancels the call at the server, a server that went away, and callbacks
//! dropped with their session.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mlbridge::{BridgeError, ErrorKind, Session, WireValue};
use mlbridge_proto::mlbridge::v1::{
    self as pb, VariableType,
    callback_server::{Callback, CallbackServer},
};
use tokio::sync::{Notify, oneshot};
use tonic::{Request, Response, Status};

/// Sets its flag when dropped: the hanging callback's future is dropped when its call is
/// cancelled.
struct SetOnDrop(Arc<AtomicBool>, Arc<Notify>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        self.1.notify_waiters();
        self.1.notify_one();
    }
}

#[derive(Default)]
struct Functions {
    cancelled: Arc<AtomicBool>,
    cancel_seen: Arc<Notify>,
}

#[tonic::async_trait]
impl Callback for Functions {
    async fn execute_callback(
        &self,
        request: Request<pb::ExecuteCallbackRequest>,
    ) -> Result<Response<pb::ExecuteCallbackResponse>, Status> {
        let r = request.into_inner();
        match r.callback_name.as_str() {
            "add" => {
                let number = |name: &str| f64::from_value(r.arguments[name].clone()).unwrap();
                Ok(Response::new(pb::ExecuteCallbackResponse {
                    result: Some((number("a") + number("b")).into_value()),
                    metadata: HashMap::new(),
                }))
            }
            "fail" => {
                let mut error =
                    BridgeError::new(ErrorKind::CallbackError, "fail raised ValueError: no");
                error.remote_type = "ValueError".into();
                error.remote_traceback = "Traceback (most recent call last):\n  ...".into();
                Err(error.into())
            }
            _ => {
                let _flag = SetOnDrop(Arc::clone(&self.cancelled), Arc::clone(&self.cancel_seen));
                std::future::pending::<()>().await;
                unreachable!()
            }
        }
    }
}

/// Serves `functions` on a free port; answers its address and a sender that stops it.
async fn serve(functions: Functions) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(CallbackServer::new(functions))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
    });
    (address, stop)
}

fn param(name: &str, ty: VariableType) -> pb::ParameterSpec {
    pb::ParameterSpec {
        name: name.into(),
        r#type: ty as i32,
        required: true,
        ..Default::default()
    }
}

async fn register(
    client: &mlbridge::Client,
    session: &Session,
    name: &str,
    endpoint: &str,
    parameters: Vec<pb::ParameterSpec>,
    timeout_ms: Option<u64>,
) {
    client
        .raw()
        .register_callback(pb::RegisterCallbackRequest {
            session_id: session.id().into(),
            name: name.into(),
            endpoint: endpoint.into(),
            parameters,
            timeout: timeout_ms.map(|ms| {
                prost_types::Duration::try_from(std::time::Duration::from_millis(ms)).unwrap()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn args(pairs: &[(&str, f64)]) -> HashMap<String, pb::Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.into_value()))
        .collect()
}

#[tokio::test]
async fn a_rust_program_calls_registered_callbacks_through_the_engine() {
    let engine = support::Engine::start(&[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    let functions = Functions::default();
    let (cancelled, cancel_seen) = (
        Arc::clone(&functions.cancelled),
        Arc::clone(&functions.cancel_seen),
    );
    let (endpoint, stop) = serve(functions).await;
    let number = VariableType::Float;
    register(
        &client,
        &session,
        "add",
        &endpoint,
        vec![param("a", number), param("b", number)],
        None,
    )
    .await;
    register(&client, &session, "fail", &endpoint, vec![], None).await;
    register(&client, &session, "hang", &endpoint, vec![], Some(200)).await;
    assert_eq!(session.info().await.unwrap().callback_count, 3);

    // A value.
    let sum = session
        .call_callback("add", args(&[("a", 1.5), ("b", 2.0)]))
        .await
        .unwrap();
    assert_eq!(f64::from_value(sum.unwrap()).unwrap(), 3.5);
    // The engine checks arguments against the registered specs.
    let missing = session
        .call_callback("add", args(&[("a", 1.0)]))
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::InvalidArgument);

    // A failure arrives typed, with the remote type and traceback, naming the callback.
    let failed = session
        .call_callback("fail", HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(failed.kind, ErrorKind::CallbackError);
    assert_eq!(failed.remote_type, "ValueError");
    assert!(failed.remote_traceback.starts_with("Traceback"));
    assert_eq!(failed.origin, "callback:fail");

    // A call past its deadline is a TIMEOUT, and the server sees it cancelled.
    let seen = cancel_seen.notified();
    let hung = session
        .call_callback("hang", HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(hung.kind, ErrorKind::Timeout, "{hung}");
    assert_eq!(hung.context["callback"], "hang");
    if !cancelled.load(Ordering::SeqCst) {
        seen.await;
    }
    assert!(cancelled.load(Ordering::SeqCst));

    // A server that went away: a clear error, not a hang.
    stop.send(()).unwrap();
    let gone = loop {
        // The server finishes its shutdown asynchronously; calls fail once it is down.
        match session
            .call_callback("add", args(&[("a", 1.0), ("b", 1.0)]))
            .await
        {
            Ok(_) => tokio::task::yield_now().await,
            Err(error) => break error,
        }
    };
    assert_eq!(gone.kind, ErrorKind::CallbackUnavailable, "{gone}");
    assert_eq!(gone.context["endpoint"], endpoint);

    // Unknown names, and callbacks that went with their session.
    let unknown = session
        .call_callback("nope", HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::CallbackNotFound);
    let id = session.id().to_owned();
    session.close().await.unwrap();
    let again = client
        .open(mlbridge::SessionOptions {
            id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.info().await.unwrap().callback_count, 0);
    let removed = again
        .call_callback("add", HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(removed.kind, ErrorKind::CallbackNotFound);
}

/// A session that expires takes its callbacks with it: the engine forgets them when the
/// state backend reports the session ended, so a new session of the same id has none.
#[tokio::test]
async fn callbacks_go_when_their_session_expires() {
    use mlbridge_proto::mlbridge::v1::ml_bridge_server::MlBridge;

    let engine = mlbridge::Engine::new();
    let client = engine.in_process_client();
    let ttl = std::time::Duration::from_millis(20);
    let session = client
        .open(mlbridge::SessionOptions {
            ttl: Some(ttl),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = session.id().to_owned();
    engine
        .register_callback(Request::new(pb::RegisterCallbackRequest {
            session_id: id.clone(),
            name: "metric".into(),
            endpoint: "127.0.0.1:9".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(session.info().await.unwrap().callback_count, 1);
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(
        engine.state().expire_sessions().await.unwrap(),
        std::slice::from_ref(&id)
    );
    // The registry hears of the expiry from the backend's session events, handled by a task
    // on this (single-threaded) runtime: give it turns, a bounded number of them.
    let again = client
        .open(mlbridge::SessionOptions {
            id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut count = again.info().await.unwrap().callback_count;
    for _ in 0..1000 {
        if count == 0 {
            break;
        }
        tokio::task::yield_now().await;
        count = again.info().await.unwrap().callback_count;
    }
    assert_eq!(count, 0);
}

/// The Python program of [`a_rust_program_calls_a_python_callback`]: registers two
/// functions with the real SDK, says so, and serves them until its stdin closes.
const PYTHON_CLIENT: &str = r#"
import sys
from mlbridge import SessionContext

with SessionContext(sys.argv[1], sys.argv[2], keep_session=True) as ctx:
    @ctx.register_callback
    def square(x: float) -> float:
        return x * x

    @ctx.register_callback
    def lookup(key: str) -> str:
        return {"a": "A"}[key]

    def greet(name: str) -> str:
        return "hello " + name

    ctx.register_tool(greet)

    print("ready", flush=True)
    sys.stdin.read()
"#;

/// Python registers, Rust calls: a value, and a Python exception arriving in Rust typed,
/// with its Python type and traceback.
#[tokio::test]
async fn a_rust_program_calls_a_python_callback() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let python = std::env::var_os("MLBRIDGE_PYTHON")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let engine = support::Engine::start(&[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    let path =
        std::env::join_paths([root.join("runtime/python"), root.join("generated/python")]).unwrap();
    let mut program = Command::new(python)
        .args(["-c", PYTHON_CLIENT, &engine.address, session.id()])
        .env("PYTHONPATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut line = String::new();
    std::io::BufReader::new(program.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");

    let squared = session
        .call_callback("square", args(&[("x", 3.0)]))
        .await
        .unwrap();
    assert_eq!(f64::from_value(squared.unwrap()).unwrap(), 9.0);
    let raised = session
        .call_callback(
            "lookup",
            [("key".to_owned(), "b".to_owned().into_value())].into(),
        )
        .await
        .unwrap_err();
    assert_eq!(raised.kind, ErrorKind::CallbackError, "{raised}");
    assert_eq!(raised.remote_type, "KeyError");
    // `python -c` keeps no source lines, but the frame is named.
    assert!(raised.remote_traceback.contains("in lookup"), "{raised:?}");

    // A Python function exposed as a tool of the session (RegisterTools), called as a tool.
    let greeting = session
        .call_tool(
            "greet",
            [("name".to_owned(), "rust".to_owned().into_value())].into(),
        )
        .await
        .unwrap();
    assert_eq!(String::from_value(greeting).unwrap(), "hello rust");

    drop(program.stdin.take());
    assert!(program.wait().unwrap().success());
}
