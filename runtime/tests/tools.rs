//! Host tools over gRPC: an in-process engine with the built-in `#[tool]` functions, driven
//! by the generated tonic client (ListTools, ExecuteTool, ExecuteStreamingTool, errors), and
//! the `mlbridge` binary's `--no-builtin-tools` flag.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use mlbridge::WireValue;
use mlbridge::builtin_tools::builtin_tools;
use mlbridge::{BridgeError, Engine, EngineBuilder, ErrorKind, ListenAddr};
use mlbridge_proto::mlbridge::v1::{self as pb, VariableType, ml_bridge_client::MlBridgeClient};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// An engine served in-process on a free port, with a client and a session; stops on drop.
struct Served {
    client: MlBridgeClient<Channel>,
    session: String,
    _stop: oneshot::Sender<()>,
}

impl Served {
    async fn start(engine: Engine) -> Served {
        let (ready, bound) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let addr: ListenAddr = "127.0.0.1:0".parse().unwrap();
        tokio::spawn(async move {
            let on_ready = |bound: &ListenAddr| {
                let _ = ready.send(bound.clone());
            };
            mlbridge::serve(engine, &addr, on_ready, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        let bound = bound.await.expect("engine ready");
        Served::connect(&bound.to_string(), stop).await
    }

    async fn connect(address: &str, stop: oneshot::Sender<()>) -> Served {
        let mut client = MlBridgeClient::connect(format!("http://{address}"))
            .await
            .expect("connect");
        let session = client
            .initialize_session(pb::InitializeSessionRequest::default())
            .await
            .expect("initialize session")
            .into_inner()
            .session
            .expect("a session")
            .session_id;
        Served {
            client,
            session,
            _stop: stop,
        }
    }

    async fn list(&mut self) -> Vec<pb::ToolSpec> {
        let request = pb::ListToolsRequest {
            session_id: self.session.clone(),
            pattern: String::new(),
        };
        let tools = self
            .client
            .list_tools(request)
            .await
            .expect("list tools")
            .into_inner()
            .tools;
        tools
            .into_iter()
            .map(|info| info.spec.expect("a spec"))
            .collect()
    }

    async fn execute(
        &mut self,
        tool: &str,
        arguments: Vec<(&str, pb::Value)>,
    ) -> Result<pb::Value, BridgeError> {
        let request = pb::ExecuteToolRequest {
            session_id: self.session.clone(),
            tool_name: tool.to_owned(),
            arguments: args(arguments),
            metadata: HashMap::new(),
        };
        match self.client.execute_tool(request).await {
            Ok(response) => Ok(response.into_inner().result.expect("a result")),
            Err(status) => Err(BridgeError::from_status(&status)),
        }
    }

    /// Every chunk until the stream ends, and the error that ended it, if any.
    async fn stream(
        &mut self,
        tool: &str,
        arguments: Vec<(&str, pb::Value)>,
    ) -> (Vec<pb::ToolChunk>, Option<BridgeError>) {
        let request = pb::ExecuteStreamingToolRequest {
            session_id: self.session.clone(),
            tool_name: tool.to_owned(),
            arguments: args(arguments),
            metadata: HashMap::new(),
        };
        let mut stream = match self.client.execute_streaming_tool(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return (Vec::new(), Some(BridgeError::from_status(&status))),
        };
        let mut chunks = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => chunks.push(chunk),
                Err(status) => return (chunks, Some(BridgeError::from_status(&status))),
            }
        }
        (chunks, None)
    }
}

fn args(arguments: Vec<(&str, pb::Value)>) -> HashMap<String, pb::Value> {
    arguments
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

fn value<T: WireValue>(v: T) -> pb::Value {
    v.into_value()
}

async fn with_builtins() -> Served {
    Served::start(
        builtin_tools()
            .into_iter()
            .fold(Engine::builder(), EngineBuilder::tool)
            .build(),
    )
    .await
}

#[tokio::test]
async fn list_tools_reports_specs_derived_from_signatures() {
    let mut engine = with_builtins().await;
    let specs = engine.list().await;
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "add",
            "count",
            "echo",
            "fail",
            "map_callback",
            "mean",
            "scale_embedding",
            "sleep",
            "word_count"
        ]
    );

    let add = &specs[0];
    assert_eq!(add.description, "Adds two numbers.");
    assert_eq!(add.return_type, VariableType::Float as i32);
    let params: Vec<(&str, i32, bool, &str)> = add
        .parameters
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.r#type,
                p.required,
                p.description.as_str(),
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            ("a", VariableType::Float as i32, true, "first addend"),
            ("b", VariableType::Float as i32, true, "second addend")
        ]
    );

    let count = &specs[1];
    assert!(count.supports_streaming);
    assert_eq!(count.return_type, VariableType::Integer as i32);
    let delay = &count.parameters[1];
    assert_eq!((delay.name.as_str(), delay.required), ("delay_ms", false));

    let mean = &specs[5];
    let element = mean.parameters[0]
        .constraints
        .as_ref()
        .and_then(|c| c.element_type);
    assert_eq!(
        (mean.parameters[0].r#type, element),
        (VariableType::List as i32, Some(VariableType::Float as i32))
    );

    let pattern = pb::ListToolsRequest {
        session_id: engine.session.clone(),
        pattern: "s*".to_owned(),
    };
    let matched = engine
        .client
        .list_tools(pattern)
        .await
        .unwrap()
        .into_inner()
        .tools;
    let names: Vec<String> = matched.into_iter().map(|t| t.spec.unwrap().name).collect();
    assert_eq!(names, ["scale_embedding", "sleep"]);
}

#[tokio::test]
async fn execute_tool_returns_typed_results() {
    let mut engine = with_builtins().await;
    assert_eq!(
        engine
            .execute("add", vec![("a", value(2.5)), ("b", value(4i64))])
            .await
            .unwrap(),
        value(6.5)
    );
    assert_eq!(
        engine
            .execute(
                "word_count",
                vec![("text", value("one two three".to_owned()))]
            )
            .await
            .unwrap(),
        value(3i64)
    );
    let nested = value(std::collections::BTreeMap::from([(
        "k".to_owned(),
        vec![1i64, 2],
    )]));
    assert_eq!(
        engine
            .execute("echo", vec![("value", nested.clone())])
            .await
            .unwrap(),
        nested
    );
    let embedding = pb::Embedding {
        values: vec![1.0, 2.0, 3.0],
        model: None,
    };
    let scaled = engine
        .execute(
            "scale_embedding",
            vec![("embedding", value(embedding)), ("factor", value(2.0))],
        )
        .await;
    assert_eq!(
        scaled.unwrap(),
        value(pb::Embedding {
            values: vec![2.0, 4.0, 6.0],
            model: None
        })
    );
    assert_eq!(
        engine
            .execute("sleep", vec![("ms", value(5i64))])
            .await
            .unwrap(),
        value(5i64)
    );
}

#[tokio::test]
async fn streaming_tool_sends_each_item_then_exactly_one_final_chunk() {
    let mut engine = with_builtins().await;
    let (chunks, error) = engine
        .stream(
            "count",
            vec![("to", value(5i64)), ("delay_ms", value(2i64))],
        )
        .await;
    assert!(error.is_none(), "{error:?}");
    let sequences: Vec<u64> = chunks.iter().map(|c| c.sequence).collect();
    assert_eq!(sequences, [0, 1, 2, 3, 4, 5], "numbered without gaps");
    let data: Vec<pb::Value> = chunks[..5]
        .iter()
        .map(|c| c.data.clone().expect("data"))
        .collect();
    assert_eq!(data, [0i64, 1, 2, 3, 4].map(value));
    assert_eq!(chunks.iter().filter(|c| c.is_final).count(), 1);
    assert!(chunks.last().unwrap().is_final);

    // Nothing to count: just the final chunk.
    let (chunks, error) = engine.stream("count", vec![("to", value(0i64))]).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].is_final);

    // A unary tool through the streaming call: one data chunk, then the final one.
    let (chunks, error) = engine
        .stream("add", vec![("a", value(1.0)), ("b", value(1.0))])
        .await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].data, Some(value(2.0)));
    assert!(chunks[1].is_final);
}

#[tokio::test]
async fn tool_errors_carry_the_message_and_name_the_tool() {
    let mut engine = with_builtins().await;
    let error = engine
        .execute(
            "fail",
            vec![("message", value("model exploded".to_owned()))],
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::ToolError);
    assert_eq!(error.message, "tool `fail` failed: model exploded");
    assert_eq!(error.context.get("tool").map(String::as_str), Some("fail"));
    assert_eq!(error.origin, "engine");

    // A failing item ends a stream with the error and no final chunk.
    let (chunks, error) = engine
        .stream(
            "count",
            vec![("to", value(3i64)), ("delay_ms", value(-1i64))],
        )
        .await;
    assert!(chunks.is_empty(), "{chunks:?}");
    let error = error.expect("an error");
    assert_eq!(error.kind, ErrorKind::ToolError);
    assert_eq!(
        error.message,
        "tool `count` failed: `delay_ms` must not be negative, got -1"
    );
}

#[tokio::test]
async fn unknown_tools_and_bad_arguments_are_refused_before_running() {
    let mut engine = with_builtins().await;
    let error = engine.execute("no_such_tool", vec![]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::ToolNotFound);
    assert!(error.message.contains("no_such_tool"), "{}", error.message);
    let (_, error) = engine.stream("no_such_tool", vec![]).await;
    assert_eq!(error.expect("an error").kind, ErrorKind::ToolNotFound);

    let error = engine
        .execute(
            "add",
            vec![("a", value("two".to_owned())), ("b", value(1.0))],
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::TypeMismatch);
    assert!(
        error.message.contains("argument `add.a`"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("expects float, got string"),
        "{}",
        error.message
    );

    let error = engine
        .execute("add", vec![("a", value(1.0))])
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidArgument);
    assert_eq!(error.message, "tool `add` needs argument `b` (float)");
    assert_eq!(
        error.context.get("parameter").map(String::as_str),
        Some("b")
    );

    let (chunks, error) = engine.stream("count", vec![("to", value(true))]).await;
    assert!(chunks.is_empty());
    let error = error.expect("an error");
    assert_eq!(error.kind, ErrorKind::TypeMismatch);
    assert!(
        error.message.contains("argument `count.to`"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn the_binary_serves_builtin_tools_unless_told_not_to() {
    for (flags, expected) in [(&[][..], 9), (&["--no-builtin-tools"][..], 0)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mlbridge"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mlbridge");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix(mlbridge::ENGINE_READY_PREFIX)
            .expect("listening line");
        let (stop, _) = oneshot::channel();
        let mut engine = Served::connect(address, stop).await;
        let count = engine.list().await.len();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(count, expected, "flags {flags:?}");
    }
}
