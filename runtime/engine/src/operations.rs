//! Framework operations and worker-hosted tools as the engine sees them: find the
//! operation or tool among those the workers serve, resolve bindings from one consistent
//! read of the session, check every value against its spec and apply defaults. The
//! checked call then goes to the [`WorkerPool`], which only routes it to the session's
//! worker.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use mlbridge_proto::mlbridge::v1::{self as pb, parameter_value::Kind};
use prost::Message;

use crate::callbacks::CallbackRegistry;
use crate::error::{BridgeError, ErrorKind, Result, clip};
use crate::params::Callee;
use crate::state::StateBackend;
use crate::workers::{ToolChunkStream, WorkerPool};

/// The answer of an engine that runs no workers.
pub fn no_workers(what: &str) -> BridgeError {
    BridgeError::new(
        ErrorKind::WorkerUnavailable,
        format!(
            "{what} needs Python workers, and this engine runs none: start it with \
             `mlbridge serve --workers N`"
        ),
    )
}

fn payload_limit(what: &str, values: &HashMap<String, pb::Value>, limit: usize) -> Result<()> {
    let size: usize = values.values().map(Message::encoded_len).sum();
    if size > limit {
        return Err(BridgeError::new(
            ErrorKind::PayloadTooLarge,
            format!("the inputs of {what} are {size} bytes, over the limit of {limit} bytes"),
        )
        .with("limit_bytes", limit)
        .with("size_bytes", size));
    }
    Ok(())
}

/// The operation `framework.operation`, or `OPERATION_NOT_FOUND` naming what exists.
pub(crate) fn find_operation<'a>(
    pool: &'a WorkerPool,
    framework: &str,
    operation: &str,
) -> Result<&'a pb::OperationSpec> {
    let not_found = |message: String| {
        BridgeError::new(ErrorKind::OperationNotFound, message)
            .with("framework", framework)
            .with("operation", operation)
    };
    if !pool.has_workers() {
        return Err(BridgeError::new(
            ErrorKind::WorkerUnavailable,
            "no worker has attached to this engine yet, so it knows no framework; start one \
             with `python -m mlbridge.worker --connect ENGINE --token-file FILE`",
        )
        .with("framework", framework)
        .with("operation", operation));
    }
    let Some(adapter) = pool.adapters().iter().find(|a| a.framework == framework) else {
        let known: Vec<&str> = pool
            .adapters()
            .iter()
            .map(|a| a.framework.as_str())
            .collect();
        return Err(not_found(format!(
            "unknown framework `{framework}` (the workers serve: {})",
            known.join(", ")
        )));
    };
    adapter
        .operations
        .iter()
        .find(|op| op.name == operation)
        .ok_or_else(|| {
            let known: Vec<&str> = adapter.operations.iter().map(|o| o.name.as_str()).collect();
            not_found(format!(
                "framework `{framework}` has no operation `{operation}` (it has: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
}

/// Runs `ExecuteFrameworkOperation` for a session that `state` has just confirmed.
pub async fn execute_operation(
    pool: &WorkerPool,
    state: &dyn StateBackend,
    callbacks: &CallbackRegistry,
    max_payload_bytes: usize,
    request: pb::ExecuteFrameworkOperationRequest,
) -> Result<pb::ExecuteFrameworkOperationResponse> {
    let started = Instant::now();
    let pb::ExecuteFrameworkOperationRequest {
        session_id,
        framework,
        operation,
        parameters,
        metadata,
    } = request;
    let spec = find_operation(pool, &framework, &operation)?;
    let full_name = format!("{framework}.{operation}");
    let callee = Callee::Operation(&full_name);
    // Literals and bindings apart; BTreeMap so that errors are reported in name order.
    let mut literals = BTreeMap::new();
    let mut bound = BTreeMap::new();
    for (name, parameter) in parameters {
        let Some(param) = spec.parameters.iter().find(|p| p.name == name) else {
            return Err(callee.unknown(&spec.parameters, &name, "parameters"));
        };
        match parameter.kind {
            Some(Kind::Value(value)) => {
                literals.insert(name, value);
            }
            Some(Kind::Binding(binding)) => {
                if !param.bindable {
                    return Err(callee.context(
                        BridgeError::invalid_argument(
                            "parameters",
                            format!(
                                "parameter `{full_name}.{name}` cannot be bound to a \
                                 variable (it is not bindable); pass a literal value"
                            ),
                        )
                        .with("parameter", &name)
                        .with("variable", &binding.variable_name),
                    ));
                }
                if binding.variable_name.is_empty() {
                    return Err(callee.context(
                        BridgeError::invalid_argument(
                            "parameters",
                            format!(
                                "the binding of parameter `{full_name}.{name}` names no variable"
                            ),
                        )
                        .with("parameter", &name),
                    ));
                }
                bound.insert(name, binding.variable_name);
            }
            None => {
                return Err(callee.context(
                    BridgeError::invalid_argument(
                        "parameters",
                        format!("parameter `{full_name}.{name}` has neither a value nor a binding"),
                    )
                    .with("parameter", &name),
                ));
            }
        }
    }
    // Every binding from one read, so that the values belong together.
    let names: Vec<String> = bound.values().cloned().collect();
    let (found, _) = if names.is_empty() {
        (Vec::new(), 0)
    } else {
        state.get(&session_id, &names).await?
    };
    let mut resolved = HashMap::with_capacity(spec.parameters.len());
    let mut bindings = HashMap::with_capacity(bound.len());
    for ((parameter, variable_name), variable) in bound.into_iter().zip(found) {
        let variable = variable.ok_or_else(|| {
            let error = BridgeError::variable_not_found(&session_id, &variable_name);
            let message = format!(
                "{} (bound to parameter `{full_name}.{parameter}`)",
                error.message
            );
            callee.context(BridgeError { message, ..error }.with("parameter", &parameter))
        })?;
        let param = spec
            .parameters
            .iter()
            .find(|p| p.name == parameter)
            .expect("checked above");
        let value = callee.check(
            param,
            variable.value.unwrap_or_default(),
            Some(&variable_name),
        )?;
        resolved.insert(parameter.clone(), value);
        bindings.insert(
            parameter,
            pb::BoundVariable {
                variable_name,
                version: variable.version,
            },
        );
    }
    for (name, value) in literals {
        let param = spec
            .parameters
            .iter()
            .find(|p| p.name == name)
            .expect("checked above");
        resolved.insert(name.clone(), callee.check(param, value, None)?);
    }
    callee.complete(&spec.parameters, &mut resolved, "parameters")?;
    // A parameter naming a session callback must name one before the worker runs anything.
    for param in spec.parameters.iter().filter(|p| p.callback) {
        if let Some(pb::Value {
            kind: Some(pb::value::Kind::StringValue(name)),
        }) = resolved.get(&param.name)
        {
            callbacks
                .get(&session_id, name)
                .map_err(|e| callee.context(e.with("parameter", &param.name)))?;
        }
    }
    payload_limit(
        &format!("operation `{full_name}`"),
        &resolved,
        max_payload_bytes,
    )?;
    let worker_request = pb::WorkerExecuteFrameworkOperationRequest {
        session_id: session_id.clone(),
        framework,
        operation,
        parameters: resolved.clone(),
        bindings: bindings.clone(),
        engine_address: String::new(),
        metadata,
        session_token: String::new(),
    };
    let what = format!("operation `{full_name}`");
    let (response, worker_id) = pool
        .run_operation(&session_id, &what, worker_request)
        .await?;
    Ok(pb::ExecuteFrameworkOperationResponse {
        results: response.results,
        resolved_parameters: resolved,
        bindings,
        worker_id: if response.worker_id.is_empty() {
            worker_id
        } else {
            response.worker_id
        },
        execution_us: response.execution_us,
        total_us: started.elapsed().as_micros() as u64,
        metadata: response.metadata,
    })
}

/// The adapters named in `frameworks` (all when empty), sorted by framework id.
pub fn describe_adapters(pool: &WorkerPool, frameworks: &[String]) -> Vec<pb::AdapterDescription> {
    pool.adapters()
        .iter()
        .filter(|a| frameworks.is_empty() || frameworks.contains(&a.framework))
        .cloned()
        .collect()
}

/// Every worker-hosted tool, as ListTools reports it (host kind WORKER with its
/// framework), sorted by name.
pub fn tool_infos(pool: &WorkerPool) -> Vec<pb::ToolInfo> {
    let mut infos: Vec<pb::ToolInfo> = pool
        .tools()
        .map(|(spec, framework)| pb::ToolInfo {
            spec: Some(spec.clone()),
            host: Some(pb::ToolHost {
                kind: pb::ToolHostKind::Worker as i32,
                framework: framework.clone(),
                ..Default::default()
            }),
            session_id: String::new(),
        })
        .collect();
    infos.sort_by(|a, b| {
        let name = |info: &pb::ToolInfo| info.spec.as_ref().map(|s| s.name.clone());
        name(a).cmp(&name(b))
    });
    infos
}

fn tool_arguments<'a>(
    pool: &'a WorkerPool,
    name: &str,
    arguments: HashMap<String, pb::Value>,
    max_payload_bytes: usize,
) -> Result<(&'a pb::ToolSpec, HashMap<String, pb::Value>)> {
    let spec = pool.tool(name).ok_or_else(|| {
        BridgeError::new(
            ErrorKind::ToolNotFound,
            format!("no tool named `{}`", clip(name)),
        )
        .with("tool", name)
    })?;
    let callee = Callee::Tool(name);
    let mut checked = HashMap::with_capacity(arguments.len());
    for (argument, value) in arguments {
        let Some(param) = spec.parameters.iter().find(|p| p.name == argument) else {
            return Err(callee.unknown(&spec.parameters, &argument, "arguments"));
        };
        checked.insert(argument, callee.check(param, value, None)?);
    }
    callee.complete(&spec.parameters, &mut checked, "arguments")?;
    payload_limit(&format!("tool `{name}`"), &checked, max_payload_bytes)?;
    Ok((spec, checked))
}

/// Runs a worker-hosted tool for a session that the engine has just confirmed.
pub async fn execute_tool(
    pool: &WorkerPool,
    max_payload_bytes: usize,
    request: pb::ExecuteToolRequest,
) -> Result<pb::ExecuteToolResponse> {
    let name = request.tool_name;
    let (spec, arguments) = tool_arguments(pool, &name, request.arguments, max_payload_bytes)?;
    if spec.supports_streaming {
        return Err(BridgeError::invalid_argument(
            "tool_name",
            format!("tool `{name}` streams its results: call ExecuteStreamingTool"),
        )
        .with("tool", &name));
    }
    let worker_request = pb::WorkerExecuteToolRequest {
        session_id: request.session_id.clone(),
        tool_name: name.clone(),
        arguments,
        metadata: request.metadata,
        engine_address: String::new(),
        session_token: String::new(),
    };
    let (mut response, worker_id) = pool
        .run_tool(
            &request.session_id,
            &format!("tool `{name}`"),
            worker_request,
        )
        .await?;
    if response.worker_id.is_empty() {
        response.worker_id = worker_id;
    }
    Ok(response)
}

/// Runs a worker-hosted tool as a stream of chunks (a unary tool gives one data chunk),
/// for a session that the engine has just confirmed. The stream fails with
/// `WORKER_CRASHED` as soon as the worker dies, and with `TIMEOUT` when no chunk comes
/// within the operation timeout. `session_token` is for the worker's calls back into the
/// engine (empty when tokens are not checked).
pub async fn stream_tool(
    pool: &WorkerPool,
    max_payload_bytes: usize,
    request: pb::ExecuteStreamingToolRequest,
    session_token: String,
) -> Result<ToolChunkStream> {
    let name = request.tool_name;
    let (_, arguments) = tool_arguments(pool, &name, request.arguments, max_payload_bytes)?;
    let what = format!("tool `{name}`");
    let worker_request = pb::WorkerExecuteStreamingToolRequest {
        session_id: request.session_id,
        tool_name: name,
        arguments,
        metadata: request.metadata,
        engine_address: String::new(),
        session_token,
    };
    pool.open_tool_stream(what, worker_request).await
}
