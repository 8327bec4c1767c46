//! Variables: register, read, write (one, many, atomically), delete, list, history and
//! rollback. Every value is judged by the state backend's rules before it is stored.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn register_variable(
    engine: &Engine,
    r: pb::RegisterVariableRequest,
) -> Result<pb::RegisterVariableResponse> {
    let session = required("session_id", &r.session_id)?;
    let ty = variable_type(r.r#type)?;
    if r.derived_by.is_empty() {
        let op = WriteOp::Register {
            name: r.name,
            ty,
            value: value_arg("initial_value", r.initial_value)?,
            constraints: r.constraints.unwrap_or_default(),
            description: r.description,
            metadata: r.metadata,
            depends_on: r.depends_on,
            derived_by: String::new(),
            guards: Vec::new(),
        };
        let (variable, sequence) = engine
            .write_one(session, op, context(r.source, HashMap::new()))
            .await?;
        return Ok(pb::RegisterVariableResponse {
            variable: Some(variable),
            sequence,
        });
    }
    // A derived variable: its tool computes the initial value from the inputs, guarded by
    // the inputs' versions like every recomputation.
    let _registering = engine.registering_derived();
    for attempt in 1.. {
        let (found, _) = engine.state.get(session, &r.depends_on).await?;
        let mut arguments = HashMap::new();
        let mut guards = Vec::new();
        for variable in found.into_iter().flatten() {
            guards.push((variable.name.clone(), variable.version));
            arguments.insert(variable.name, variable.value.unwrap_or_default());
        }
        // A missing input is reported by the registration itself; compute only when all exist.
        let value = if guards.len() == r.depends_on.len() && !r.depends_on.is_empty() {
            engine
                .compute(session, &r.name, &r.derived_by, arguments)
                .await?
        } else {
            pb::Value::default()
        };
        let op = WriteOp::Register {
            name: r.name.clone(),
            ty,
            value,
            constraints: r.constraints.clone().unwrap_or_default(),
            description: r.description.clone(),
            metadata: r.metadata.clone(),
            depends_on: r.depends_on.clone(),
            derived_by: r.derived_by.clone(),
            guards,
        };
        match engine
            .write_one(session, op, context(r.source.clone(), HashMap::new()))
            .await
        {
            Err(e) if e.kind == ErrorKind::VersionConflict && attempt < 8 => continue,
            outcome => {
                let (variable, sequence) = outcome?;
                return Ok(pb::RegisterVariableResponse {
                    variable: Some(variable),
                    sequence,
                });
            }
        }
    }
    unreachable!("the loop returns")
}

pub(super) async fn get_variable(
    engine: &Engine,
    r: pb::GetVariableRequest,
) -> Result<pb::GetVariableResponse> {
    let (variable, snapshot_sequence) = engine
        .variable(
            required("session_id", &r.session_id)?,
            required("name", &r.name)?,
        )
        .await?;
    Ok(pb::GetVariableResponse {
        variable: Some(variable),
        snapshot_sequence,
    })
}

pub(super) async fn set_variable(
    engine: &Engine,
    r: pb::SetVariableRequest,
) -> Result<pb::SetVariableResponse> {
    let op = WriteOp::Set {
        name: required("name", &r.name)?.to_owned(),
        value: value_arg("value", r.value)?,
        expected_version: r.expected_version,
    };
    let (variable, sequence) = engine
        .write_one(
            required("session_id", &r.session_id)?,
            op,
            locked_context(r.source, r.metadata, r.lock_token),
        )
        .await?;
    Ok(pb::SetVariableResponse {
        variable: Some(variable),
        sequence,
    })
}

pub(super) async fn delete_variable(
    engine: &Engine,
    r: pb::DeleteVariableRequest,
) -> Result<pb::DeleteVariableResponse> {
    let op = WriteOp::Delete {
        name: required("name", &r.name)?.to_owned(),
        expected_version: r.expected_version,
    };
    let (variable, sequence) = engine
        .write_one(
            required("session_id", &r.session_id)?,
            op,
            locked_context(r.source, HashMap::new(), r.lock_token),
        )
        .await?;
    Ok(pb::DeleteVariableResponse {
        variable: Some(variable),
        sequence,
    })
}

pub(super) async fn list_variables(
    engine: &Engine,
    r: pb::ListVariablesRequest,
) -> Result<pb::ListVariablesResponse> {
    let pattern = Glob::new(&r.pattern)?;
    let (variables, snapshot_sequence) = engine
        .state
        .list(required("session_id", &r.session_id)?, &pattern)
        .await?;
    Ok(pb::ListVariablesResponse {
        variables,
        snapshot_sequence,
    })
}

pub(super) async fn get_variables(
    engine: &Engine,
    r: pb::GetVariablesRequest,
) -> Result<pb::GetVariablesResponse> {
    let (found, snapshot_sequence) = engine
        .state
        .get(required("session_id", &r.session_id)?, &r.names)
        .await?;
    let mut response = pb::GetVariablesResponse {
        snapshot_sequence,
        ..Default::default()
    };
    let mut reported = std::collections::HashSet::new();
    for (name, variable) in r.names.into_iter().zip(found) {
        match variable {
            Some(variable) => {
                response.variables.insert(name, variable);
            }
            None if reported.insert(name.clone()) => response.missing.push(name),
            None => {}
        }
    }
    Ok(response)
}

pub(super) async fn set_variables(
    engine: &Engine,
    r: pb::SetVariablesRequest,
) -> Result<pb::SetVariablesResponse> {
    let session = required("session_id", &r.session_id)?;
    if r.writes.is_empty() {
        return Err(BridgeError::invalid_argument(
            "writes",
            "a batch needs at least one write",
        ));
    }
    if r.writes.len() > engine.limits.max_writes_per_batch {
        return Err(BridgeError::invalid_argument(
            "writes",
            format!(
                "a batch of {} writes is over the limit of {}; split it",
                r.writes.len(),
                engine.limits.max_writes_per_batch
            ),
        )
        .with("limit", engine.limits.max_writes_per_batch));
    }
    let mut ops = Vec::with_capacity(r.writes.len());
    let mut seen = std::collections::HashSet::new();
    for (i, write) in r.writes.into_iter().enumerate() {
        if write.name.is_empty() {
            return Err(BridgeError::invalid_argument(
                "writes",
                format!("write {i} names no variable"),
            ));
        }
        if !seen.insert(write.name.clone()) {
            return Err(BridgeError::invalid_argument(
                "writes",
                format!("variable `{}` is written twice in one batch", write.name),
            )
            .with("variable", &write.name));
        }
        ops.push(WriteOp::Set {
            name: write.name,
            value: value_arg(&format!("writes[{i}].value"), write.value)?,
            expected_version: write.expected_version,
        });
    }
    let names: Vec<String> = ops.iter().map(|op| op.name().to_owned()).collect();
    let outcomes = engine
        .write(
            session,
            ops,
            r.atomic,
            locked_context(r.source, r.metadata, r.lock_token),
        )
        .await?;
    let all_applied = outcomes.iter().all(Result::is_ok);
    // A failed atomic batch: only the write that failed carries the error; the others were
    // valid but not applied, and carry no outcome (as the proto says).
    let failed_at = (r.atomic && !all_applied).then(|| {
        outcomes
            .iter()
            .find_map(|o| o.as_ref().err())
            .and_then(crate::state::variables::failed_index)
            .unwrap_or(0)
    });
    let results = names
        .into_iter()
        .zip(outcomes)
        .enumerate()
        .map(|(i, (name, outcome))| match outcome {
            Err(_) if failed_at.is_some_and(|at| at != i) => pb::VariableWriteResult {
                name,
                outcome: None,
                sequence: 0,
            },
            Ok((variable, sequence)) => pb::VariableWriteResult {
                name,
                outcome: Some(pb::variable_write_result::Outcome::NewVersion(
                    variable.version,
                )),
                sequence,
            },
            Err(error) => pb::VariableWriteResult {
                name,
                outcome: Some(pb::variable_write_result::Outcome::Error(error.into())),
                sequence: 0,
            },
        })
        .collect();
    Ok(pb::SetVariablesResponse {
        results,
        all_applied,
    })
}

pub(super) async fn get_variable_history(
    engine: &Engine,
    r: pb::GetVariableHistoryRequest,
) -> Result<pb::GetVariableHistoryResponse> {
    let entries = engine
        .state
        .history(
            required("session_id", &r.session_id)?,
            required("name", &r.name)?,
            r.limit as usize,
        )
        .await?;
    Ok(pb::GetVariableHistoryResponse { entries })
}

pub(super) async fn rollback_variable(
    engine: &Engine,
    r: pb::RollbackVariableRequest,
) -> Result<pb::RollbackVariableResponse> {
    let op = WriteOp::Rollback {
        name: required("name", &r.name)?.to_owned(),
        target_version: r.target_version,
        expected_version: r.expected_version,
    };
    let (variable, sequence) = engine
        .write_one(
            required("session_id", &r.session_id)?,
            op,
            locked_context(r.source, r.metadata, r.lock_token),
        )
        .await?;
    Ok(pb::RollbackVariableResponse {
        variable: Some(variable),
        sequence,
    })
}
