//! The built-in tools through the tool machinery: specs from signatures, argument checks,
//! results, errors and streams.

use std::collections::{BTreeMap, HashMap};

use mlbridge_proto::mlbridge::v1::{self as pb, VariableType};

use super::*;
use crate::tools::{Bytes, Handler, ToolRegistry, WireValue};
use crate::{BridgeError, ErrorKind, Result};

fn registry(tools: Vec<ToolDef>) -> ToolRegistry {
    let mut registry = ToolRegistry::new();
    for tool in tools {
        registry.register(tool).unwrap();
    }
    registry
}

fn arguments(args: Vec<(&str, Value)>) -> HashMap<String, Value> {
    args.into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

async fn call(registry: &ToolRegistry, name: &str, args: Vec<(&str, Value)>) -> Result<Value> {
    let (handler, args) = registry.prepare("session-1", name, arguments(args))?;
    let Handler::Unary(run) = handler else {
        panic!("`{name}` streams")
    };
    run(args).await
}

async fn stream(
    registry: &ToolRegistry,
    name: &str,
    args: Vec<(&str, Value)>,
) -> Result<Vec<Result<Value>>> {
    let (handler, args) = registry.prepare("session-1", name, arguments(args))?;
    let Handler::Streaming(run) = handler else {
        panic!("`{name}` is unary")
    };
    Ok(run(args).collect().await)
}

fn spec(registry: &ToolRegistry, name: &str) -> pb::ToolSpec {
    registry
        .specs()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

/// (name, type, required, element type, description) of each parameter.
fn params(spec: &pb::ToolSpec) -> Vec<(&str, VariableType, bool, Option<VariableType>, &str)> {
    spec.parameters
        .iter()
        .map(|p| {
            let element = p
                .constraints
                .as_ref()
                .and_then(|c| c.element_type)
                .map(|t| VariableType::try_from(t).unwrap());
            (
                p.name.as_str(),
                VariableType::try_from(p.r#type).unwrap(),
                p.required,
                element,
                p.description.as_str(),
            )
        })
        .collect()
}

fn value<T: WireValue>(v: T) -> Value {
    v.into_value()
}

fn assert_invalid(error: &BridgeError, tool: &str, argument: &str, detail: &str) {
    assert_bad_argument(error, ErrorKind::InvalidArgument, tool, argument, detail);
}

fn assert_bad_argument(
    error: &BridgeError,
    kind: ErrorKind,
    tool: &str,
    argument: &str,
    detail: &str,
) {
    assert_eq!(error.kind, kind, "{error}");
    assert!(error.message.contains(tool), "{error}");
    assert!(error.message.contains(&format!("`{argument}`")), "{error}");
    assert!(error.message.contains(detail), "{error}");
    assert_eq!(
        error.context.get("tool").map(String::as_str),
        Some(tool),
        "{error:?}"
    );
}

#[test]
fn builtin_specs_come_from_the_signatures() {
    let registry = registry(builtin_tools());
    let names: Vec<String> = registry.specs().into_iter().map(|s| s.name).collect();
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

    // A callback parameter is the callback's name on the wire.
    let map_callback = spec(&registry, "map_callback");
    assert_eq!(map_callback.return_type, VariableType::List as i32);
    let kinds: Vec<(&str, VariableType, bool)> = params(&map_callback)
        .into_iter()
        .map(|(name, ty, required, _, _)| (name, ty, required))
        .collect();
    assert_eq!(
        kinds,
        [
            ("callback", VariableType::String, true),
            ("calls", VariableType::List, true),
            ("concurrency", VariableType::Integer, false)
        ]
    );

    let add = spec(&registry, "add");
    assert_eq!(add.description, "Adds two numbers.");
    assert_eq!(add.return_type, VariableType::Float as i32);
    assert!(!add.supports_streaming);
    assert_eq!(
        params(&add),
        [
            ("a", VariableType::Float, true, None, "first addend"),
            ("b", VariableType::Float, true, None, "second addend")
        ]
    );

    let mean = spec(&registry, "mean");
    assert_eq!(
        mean.return_type,
        VariableType::Float as i32,
        "Result<f64, _> returns a float"
    );
    assert_eq!(
        params(&mean),
        [(
            "values",
            VariableType::List,
            true,
            Some(VariableType::Float),
            "the numbers to average"
        )]
    );

    let count = spec(&registry, "count");
    assert!(count.supports_streaming);
    assert_eq!(
        count.return_type,
        VariableType::Integer as i32,
        "items are Result<i64, _>"
    );
    assert_eq!(
        params(&count)[1],
        (
            "delay_ms",
            VariableType::Integer,
            false,
            None,
            "pause before each chunk after the first (default 0)"
        )
    );
    assert!(
        count.parameters[1].constraints.as_ref().unwrap().nullable,
        "Option<T> accepts null"
    );

    let expected = [
        ("echo", VariableType::Any, VariableType::Any),
        ("fail", VariableType::String, VariableType::Any),
        (
            "scale_embedding",
            VariableType::Embedding,
            VariableType::Embedding,
        ),
        ("sleep", VariableType::Integer, VariableType::Integer),
        ("word_count", VariableType::String, VariableType::Integer),
    ];
    for (name, first, result) in expected {
        let spec = spec(&registry, name);
        assert_eq!(params(&spec)[0].1, first, "{name}");
        assert_eq!(spec.return_type, result as i32, "{name}");
        assert!(!spec.description.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn unary_builtins_run() {
    let registry = registry(builtin_tools());
    assert_eq!(
        call(&registry, "add", vec![("a", value(1.5)), ("b", value(2.0))])
            .await
            .unwrap(),
        value(3.5)
    );
    // An integer is accepted where a float is declared.
    assert_eq!(
        call(
            &registry,
            "add",
            vec![("a", value(1i64)), ("b", value(2.0))]
        )
        .await
        .unwrap(),
        value(3.0)
    );
    let any = value(vec!["x".to_owned(), "y".to_owned()]);
    assert_eq!(
        call(&registry, "echo", vec![("value", any.clone())])
            .await
            .unwrap(),
        any
    );
    let words = call(
        &registry,
        "word_count",
        vec![("text", value("the quick  brown fox".to_owned()))],
    )
    .await;
    assert_eq!(words.unwrap(), value(4i64));
    let mean = call(
        &registry,
        "mean",
        vec![("values", value(vec![1.0, 2.0, 6.0]))],
    )
    .await;
    assert_eq!(mean.unwrap(), value(3.0));
    let embedding = Embedding {
        values: vec![1.0, -2.0],
        model: Some("m".to_owned()),
    };
    let scaled = call(
        &registry,
        "scale_embedding",
        vec![("embedding", value(embedding)), ("factor", value(0.5))],
    )
    .await;
    assert_eq!(
        scaled.unwrap(),
        value(Embedding {
            values: vec![0.5, -1.0],
            model: Some("m".to_owned())
        })
    );
    assert_eq!(
        call(&registry, "sleep", vec![("ms", value(1i64))])
            .await
            .unwrap(),
        value(1i64)
    );
}

#[tokio::test]
async fn errors_become_tool_errors_naming_the_tool() {
    let registry = registry(builtin_tools());
    let error = call(
        &registry,
        "fail",
        vec![("message", value("boom".to_owned()))],
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind, ErrorKind::ToolError);
    assert_eq!(error.message, "tool `fail` failed: boom");
    assert_eq!(error.context.get("tool").map(String::as_str), Some("fail"));
    let error = call(
        &registry,
        "mean",
        vec![("values", value(Vec::<f64>::new()))],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (error.kind, error.message.as_str()),
        (
            ErrorKind::ToolError,
            "tool `mean` failed: no values to average"
        )
    );
    let error = call(&registry, "sleep", vec![("ms", value(-1i64))])
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        "tool `sleep` failed: `ms` must not be negative, got -1"
    );
}

#[tokio::test]
async fn bad_arguments_name_the_tool_and_argument() {
    let registry = registry(builtin_tools());
    let error = call(
        &registry,
        "add",
        vec![("a", value("one".to_owned())), ("b", value(2.0))],
    )
    .await
    .unwrap_err();
    assert_bad_argument(
        &error,
        ErrorKind::TypeMismatch,
        "add",
        "add.a",
        "expects float, got string",
    );
    let error = call(&registry, "add", vec![("a", value(1.0))])
        .await
        .unwrap_err();
    assert_invalid(&error, "add", "b", "needs argument");
    assert_eq!(
        error.context.get("parameter").map(String::as_str),
        Some("b")
    );
    let error = call(
        &registry,
        "add",
        vec![("a", value(1.0)), ("b", value(2.0)), ("c", value(3.0))],
    )
    .await
    .unwrap_err();
    assert_invalid(&error, "add", "c", "has no argument");
    let error = call(
        &registry,
        "mean",
        vec![("values", value(vec!["x".to_owned()]))],
    )
    .await
    .unwrap_err();
    assert_bad_argument(
        &error,
        ErrorKind::TypeMismatch,
        "mean",
        "mean.values[0]",
        "expects float, got string",
    );
    let error = call(&registry, "nope", vec![]).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::ToolNotFound);
}

#[tokio::test]
async fn count_streams_its_items() {
    let registry = registry(builtin_tools());
    let items = stream(
        &registry,
        "count",
        vec![("to", value(4i64)), ("delay_ms", value(1i64))],
    )
    .await
    .unwrap();
    let items: Vec<Value> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(items, [0i64, 1, 2, 3].map(value));
    // A missing optional argument and an explicit null both mean "no delay".
    let items = stream(&registry, "count", vec![("to", value(2i64))])
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    let items = stream(
        &registry,
        "count",
        vec![("to", value(2i64)), ("delay_ms", value(None::<i64>))],
    )
    .await
    .unwrap();
    assert_eq!(items.len(), 2);
    let items = stream(
        &registry,
        "count",
        vec![("to", value(3i64)), ("delay_ms", value(-5i64))],
    )
    .await
    .unwrap();
    let error = items.into_iter().next().unwrap().unwrap_err();
    assert_eq!(error.kind, ErrorKind::ToolError);
    assert_eq!(
        error.message,
        "tool `count` failed: `delay_ms` must not be negative, got -5"
    );
}

// Tools that exercise the macro's corners rather than serve anyone.

/// A tool whose names would clash with the generated handler's if it were unhygienic.
#[tool]
fn args(args: i64, spec: i64) -> i64 {
    args * spec
}

/// Raw identifiers lose their `r#` on the wire.
#[tool(name = "corner.raw", params(r#type = "a keyword"))]
async fn r#match(r#type: String) -> String {
    r#type
}

/// Collections, bytes and narrow integers.
#[tool]
fn shapes(
    tags: Vec<String>,
    weights: BTreeMap<String, f64>,
    blob: Option<Bytes>,
    small: i32,
) -> HashMap<String, i64> {
    let blob = blob.map_or(0, |b| b.0.len());
    HashMap::from([
        ("tags".to_owned(), tags.len() as i64),
        ("weights".to_owned(), weights.len() as i64),
        ("blob".to_owned(), blob as i64),
        ("small".to_owned(), i64::from(small)),
    ])
}

/// Takes nothing and returns nothing.
#[tool]
fn nothing() {}

/// Streams plain items (not results) from an async setup-free stream.
#[tool(streaming)]
fn letters(word: String) -> impl Stream<Item = String> {
    tokio_stream::iter(word.chars().map(String::from).collect::<Vec<_>>())
}

/// Streams from a named stream type, failing half-way.
#[tool(streaming)]
fn half(n: i64) -> tokio_stream::Iter<std::vec::IntoIter<std::io::Result<i64>>> {
    let items = (0..n).map(|i| {
        if i < n / 2 {
            Ok(i)
        } else {
            Err(std::io::Error::other(format!("stopped at {i}")))
        }
    });
    tokio_stream::iter(items.collect::<Vec<_>>())
}

fn corners() -> ToolRegistry {
    registry(vec![
        args_tool(),
        match_tool(),
        shapes_tool(),
        nothing_tool(),
        letters_tool(),
        half_tool(),
    ])
}

#[test]
fn corner_specs() {
    let registry = corners();
    let names: Vec<String> = registry.specs().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["args", "corner.raw", "half", "letters", "nothing", "shapes"]
    );
    let raw = spec(&registry, "corner.raw");
    assert_eq!(
        raw.description,
        "Raw identifiers lose their `r#` on the wire."
    );
    assert_eq!(
        params(&raw),
        [("type", VariableType::String, true, None, "a keyword")]
    );
    assert_eq!(
        params(&spec(&registry, "shapes")),
        [
            (
                "tags",
                VariableType::List,
                true,
                Some(VariableType::String),
                ""
            ),
            (
                "weights",
                VariableType::Map,
                true,
                Some(VariableType::Float),
                ""
            ),
            ("blob", VariableType::Bytes, false, None, ""),
            ("small", VariableType::Integer, true, None, ""),
        ]
    );
    assert_eq!(
        spec(&registry, "shapes").return_type,
        VariableType::Map as i32
    );
    let nothing = spec(&registry, "nothing");
    assert!(nothing.parameters.is_empty());
    assert_eq!(nothing.return_type, VariableType::Any as i32);
    assert_eq!(
        spec(&registry, "letters").return_type,
        VariableType::String as i32
    );
    assert_eq!(
        spec(&registry, "half").return_type,
        VariableType::Integer as i32
    );
}

#[tokio::test]
async fn corner_calls() {
    let registry = corners();
    assert_eq!(
        call(
            &registry,
            "args",
            vec![("args", value(6i64)), ("spec", value(7i64))]
        )
        .await
        .unwrap(),
        value(42i64)
    );
    assert_eq!(
        call(
            &registry,
            "corner.raw",
            vec![("type", value("t".to_owned()))]
        )
        .await
        .unwrap(),
        value("t".to_owned())
    );
    let shapes = call(
        &registry,
        "shapes",
        vec![
            ("tags", value(vec!["a".to_owned(), "b".to_owned()])),
            ("weights", value(BTreeMap::from([("w".to_owned(), 1.0)]))),
            ("small", value(-3i64)),
        ],
    )
    .await
    .unwrap();
    let expected = HashMap::from([("tags", 2i64), ("weights", 1), ("blob", 0), ("small", -3)]);
    assert_eq!(
        shapes,
        value(
            expected
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<HashMap<_, _>>()
        )
    );
    assert_eq!(call(&registry, "nothing", vec![]).await.unwrap(), value(()));

    // Passes the spec check (an integer) but not the Rust type (i32): the decode error
    // still names the tool and the argument.
    let too_big = vec![
        ("tags", value(Vec::<String>::new())),
        ("weights", value(BTreeMap::<String, f64>::new())),
        ("small", value(1i64 << 40)),
    ];
    let error = call(&registry, "shapes", too_big).await.unwrap_err();
    assert_invalid(
        &error,
        "shapes",
        "small",
        "does not fit in a 32-bit integer",
    );
    assert_eq!(
        error.context.get("parameter").map(String::as_str),
        Some("small")
    );

    let letters = stream(
        &registry,
        "letters",
        vec![("word", value("abc".to_owned()))],
    )
    .await
    .unwrap();
    let letters: Vec<Value> = letters.into_iter().map(Result::unwrap).collect();
    assert_eq!(letters, ["a", "b", "c"].map(|s| value(s.to_owned())));
    let half = stream(&registry, "half", vec![("n", value(4i64))])
        .await
        .unwrap();
    assert_eq!(
        half.len(),
        4,
        "the engine, not the tool, stops after the first error"
    );
    assert_eq!(half[1].as_ref().unwrap(), &value(1i64));
    assert_eq!(
        half[2].as_ref().unwrap_err().message,
        "tool `half` failed: stopped at 2"
    );
    // Argument errors of a streaming tool arrive as the stream's only item.
    let (handler, mut args) = registry
        .prepare(
            "s",
            "letters",
            arguments(vec![("word", value("x".to_owned()))]),
        )
        .unwrap();
    let Handler::Streaming(run) = handler else {
        panic!("letters streams")
    };
    args.take::<String>("word").unwrap();
    let items: Vec<Result<Value>> = run(args).collect().await;
    assert_eq!(items.len(), 1);
    assert_invalid(
        items[0].as_ref().unwrap_err(),
        "letters",
        "word",
        "needs argument",
    );
}
