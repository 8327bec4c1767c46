//! Property tests of the state layer through the in-process engine (the `MLBridge`
//! methods called directly): arbitrary sequences of registrations, writes, deletions,
//! batches (atomic or not), listings and reads with arbitrary names never panic, and after
//! every step the session holds exactly what a simple model says (values, versions, change
//! sequence); every refusal is one of the error kinds the model allows for it.

use std::collections::{BTreeMap, BTreeSet};

use mlbridge_engine::{BridgeError, Engine, ErrorKind};
use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, VariableType, ml_bridge_server::MlBridge, value::Kind,
};
use proptest::prelude::*;
use tonic::Request;

mod support;
use support::{check, strategies};

const MIN: i64 = -50;
const MAX: i64 = 50;

#[derive(Debug, Clone)]
enum Op {
    Register(String, i64),
    Set(String, i64, Option<u64>),
    Delete(String, Option<u64>),
    Batch(Vec<(String, i64, Option<u64>)>, bool),
    List(String),
    Get(Vec<String>),
}

/// Names that often collide (a small pool) and sometimes are anything at all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "c", "x.y", "x:z", "n/1", "_"]).prop_map(str::to_owned),
        1 => strategies::name(),
    ]
}

fn expected_version() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![3 => Just(None), 1 => (0u64..4).prop_map(Some), 1 => any::<u64>().prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop_oneof![4 => MIN - 10..MAX + 10, 1 => any::<i64>()];
    let write = (name(), value.clone(), expected_version());
    prop_oneof![
        3 => (name(), value.clone()).prop_map(|(n, v)| Op::Register(n, v)),
        3 => (name(), value, expected_version()).prop_map(|(n, v, e)| Op::Set(n, v, e)),
        1 => (name(), expected_version()).prop_map(|(n, e)| Op::Delete(n, e)),
        3 => (prop::collection::vec(write, 0..6), any::<bool>()).prop_map(|(w, a)| Op::Batch(w, a)),
        1 => prop_oneof![strategies::text(), Just("*".to_owned()), Just("x*".to_owned())].prop_map(Op::List),
        1 => prop::collection::vec(name(), 0..4).prop_map(Op::Get),
    ]
}

/// What the session should hold: name -> (value, version), and the change sequence.
#[derive(Debug, Default, Clone)]
struct Model {
    vars: BTreeMap<String, (i64, u64)>,
    sequence: u64,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(c))
        && name.len() <= 255
}

impl Model {
    /// Judges one write against the model, applying it when accepted; the error kinds it
    /// may be refused with otherwise.
    fn write(
        &mut self,
        name: &str,
        value: i64,
        expected: Option<u64>,
        register: bool,
    ) -> Result<u64, BTreeSet<ErrorKind>> {
        let mut refusals = BTreeSet::new();
        if !valid_name(name) {
            refusals.insert(ErrorKind::InvalidArgument);
            // An invalid name can never exist, so a write to it may be "not found".
            if !register {
                refusals.insert(ErrorKind::VariableNotFound);
            }
        }
        let current = self.vars.get(name).copied();
        match (register, current) {
            (true, Some(_)) => {
                refusals.insert(ErrorKind::VariableAlreadyExists);
            }
            (false, None) => {
                refusals.insert(ErrorKind::VariableNotFound);
            }
            (false, Some((_, version))) if expected.is_some_and(|e| e != version) => {
                refusals.insert(ErrorKind::VersionConflict);
            }
            _ => {}
        }
        if !(MIN..=MAX).contains(&value) {
            refusals.insert(ErrorKind::ConstraintViolation);
        }
        if !refusals.is_empty() {
            return Err(refusals);
        }
        let version = current.map_or(1, |(_, v)| v + 1);
        self.vars.insert(name.to_owned(), (value, version));
        self.sequence += 1;
        Ok(version)
    }
}

fn int(v: i64) -> pb::Value {
    pb::Value {
        kind: Some(Kind::IntValue(v)),
    }
}

fn refused(
    what: &str,
    error: &BridgeError,
    allowed: &BTreeSet<ErrorKind>,
) -> Result<(), TestCaseError> {
    prop_assert!(
        allowed.contains(&error.kind),
        "{what}: refused with {:?} ({}), the model allows {allowed:?}",
        error.kind,
        error.message
    );
    Ok(())
}

/// The session's variables and sequence as `ListVariables("*")` and `GetSession` see them.
async fn observed(engine: &Engine, session: &str) -> (BTreeMap<String, (i64, u64)>, u64) {
    let listed = engine
        .list_variables(Request::new(pb::ListVariablesRequest {
            session_id: session.to_owned(),
            pattern: "*".to_owned(),
        }))
        .await
        .expect("listing every variable")
        .into_inner();
    let vars = listed
        .variables
        .into_iter()
        .map(|v| {
            let value = match v.value.and_then(|v| v.kind) {
                Some(Kind::IntValue(n)) => n,
                other => panic!("`{}` holds {other:?}", v.name),
            };
            (v.name, (value, v.version))
        })
        .collect();
    let info = engine
        .get_session(Request::new(pb::GetSessionRequest {
            session_id: session.to_owned(),
        }))
        .await
        .expect("the session")
        .into_inner();
    (vars, info.session.expect("a session").current_sequence)
}

async fn step(
    engine: &Engine,
    session: &str,
    model: &mut Model,
    op: Op,
) -> Result<(), TestCaseError> {
    let sid = session.to_owned();
    match op {
        Op::Register(name, value) => {
            let expected = model.write(&name, value, None, true);
            let answer = engine
                .register_variable(Request::new(pb::RegisterVariableRequest {
                    session_id: sid,
                    name: name.clone(),
                    r#type: VariableType::Integer as i32,
                    initial_value: Some(int(value)),
                    constraints: Some(Constraints {
                        min: Some(MIN as f64),
                        max: Some(MAX as f64),
                        ..Constraints::default()
                    }),
                    ..Default::default()
                }))
                .await;
            match (answer, expected) {
                (Ok(answer), Ok(version)) => {
                    prop_assert_eq!(
                        answer.into_inner().variable.map(|v| v.version),
                        Some(version)
                    );
                }
                (Err(status), Err(allowed)) => {
                    refused("register", &BridgeError::from_status(&status), &allowed)?
                }
                (answer, expected) => {
                    return Err(TestCaseError::fail(format!(
                        "register `{name}` = {value}: got {answer:?}, the model says {expected:?}"
                    )));
                }
            }
        }
        Op::Set(name, value, expected_version) => {
            let expected = model.write(&name, value, expected_version, false);
            let answer = engine
                .set_variable(Request::new(pb::SetVariableRequest {
                    session_id: sid,
                    name: name.clone(),
                    value: Some(int(value)),
                    expected_version,
                    ..Default::default()
                }))
                .await;
            match (answer, expected) {
                (Ok(answer), Ok(version)) => {
                    prop_assert_eq!(
                        answer.into_inner().variable.map(|v| v.version),
                        Some(version)
                    );
                }
                (Err(status), Err(allowed)) => {
                    refused("set", &BridgeError::from_status(&status), &allowed)?
                }
                (answer, expected) => {
                    return Err(TestCaseError::fail(format!(
                        "set `{name}` = {value} at {expected_version:?}: got {answer:?}, the model says {expected:?}"
                    )));
                }
            }
        }
        Op::Delete(name, expected_version) => {
            let current = model.vars.get(&name).copied();
            let answer = engine
                .delete_variable(Request::new(pb::DeleteVariableRequest {
                    session_id: sid,
                    name: name.clone(),
                    expected_version,
                    ..Default::default()
                }))
                .await;
            match (answer, current) {
                (Ok(_), Some((_, version))) if expected_version.is_none_or(|e| e == version) => {
                    model.vars.remove(&name);
                    model.sequence += 1;
                }
                (Err(status), current) => {
                    let error = BridgeError::from_status(&status);
                    let allowed: BTreeSet<ErrorKind> = match current {
                        None => [ErrorKind::VariableNotFound, ErrorKind::InvalidArgument].into(),
                        Some(_) => [ErrorKind::VersionConflict].into(),
                    };
                    refused("delete", &error, &allowed)?;
                    prop_assert!(
                        current.is_none() || expected_version.is_some(),
                        "delete `{}` refused: {}",
                        name,
                        error
                    );
                }
                (answer, current) => {
                    return Err(TestCaseError::fail(format!(
                        "delete `{name}` at {expected_version:?}: got {answer:?}, the model has {current:?}"
                    )));
                }
            }
        }
        Op::Batch(writes, atomic) => {
            let names: BTreeSet<&String> = writes.iter().map(|(n, _, _)| n).collect();
            let request_error = writes.is_empty()
                || names.len() < writes.len()
                || writes.iter().any(|(name, _, _)| name.is_empty());
            let answer = engine
                .set_variables(Request::new(pb::SetVariablesRequest {
                    session_id: sid,
                    writes: writes
                        .iter()
                        .map(|(name, value, expected_version)| pb::VariableWrite {
                            name: name.clone(),
                            value: Some(int(*value)),
                            expected_version: *expected_version,
                        })
                        .collect(),
                    atomic,
                    ..Default::default()
                }))
                .await;
            if request_error {
                // Empty batches, repeated names and empty names are refused as a whole.
                let status = match answer {
                    Ok(answer) => {
                        return Err(TestCaseError::fail(format!(
                            "batch {writes:?} accepted: {answer:?}"
                        )));
                    }
                    Err(status) => status,
                };
                let error = BridgeError::from_status(&status);
                refused("batch", &error, &[ErrorKind::InvalidArgument].into())?;
                return Ok(());
            }
            let answer = match answer {
                Ok(answer) => answer.into_inner(),
                Err(status) => {
                    return Err(TestCaseError::fail(format!(
                        "batch {writes:?} failed as a whole: {status:?}"
                    )));
                }
            };
            prop_assert_eq!(answer.results.len(), writes.len());
            let mut trial = model.clone();
            let outcomes: Vec<_> = writes
                .iter()
                .map(|(name, value, expected)| trial.write(name, *value, *expected, false))
                .collect();
            let all_ok = outcomes.iter().all(Result::is_ok);
            if atomic && !all_ok {
                prop_assert!(!answer.all_applied);
                prop_assert!(
                    answer.results.iter().all(|r| r.sequence == 0),
                    "{:?}",
                    answer
                );
                prop_assert!(
                    answer.results.iter().any(|r| matches!(
                        r.outcome,
                        Some(pb::variable_write_result::Outcome::Error(_))
                    )),
                    "no write of a failed atomic batch says why: {:?}",
                    answer
                );
            } else {
                prop_assert_eq!(answer.all_applied, all_ok);
                for ((result, outcome), (name, _, _)) in
                    answer.results.iter().zip(&outcomes).zip(&writes)
                {
                    prop_assert_eq!(&result.name, name);
                    match (&result.outcome, outcome) {
                        (Some(pb::variable_write_result::Outcome::NewVersion(v)), Ok(version)) => {
                            prop_assert_eq!(v, version);
                        }
                        (Some(pb::variable_write_result::Outcome::Error(error)), Err(allowed)) => {
                            refused("batch write", &BridgeError::from(error.clone()), allowed)?;
                        }
                        (got, expected) => {
                            return Err(TestCaseError::fail(format!(
                                "write `{name}` in {writes:?}: got {got:?}, the model says {expected:?}"
                            )));
                        }
                    }
                }
                *model = trial;
            }
        }
        Op::List(pattern) => {
            let answer = engine
                .list_variables(Request::new(pb::ListVariablesRequest {
                    session_id: sid,
                    pattern: pattern.clone(),
                }))
                .await;
            match answer {
                Ok(answer) => {
                    for variable in answer.into_inner().variables {
                        prop_assert!(model.vars.contains_key(&variable.name));
                    }
                }
                Err(status) => refused(
                    "list",
                    &BridgeError::from_status(&status),
                    &[ErrorKind::InvalidArgument].into(),
                )?,
            }
        }
        Op::Get(names) => {
            let answer = engine
                .get_variables(Request::new(pb::GetVariablesRequest {
                    session_id: sid,
                    names: names.clone(),
                }))
                .await;
            match answer {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    for name in &names {
                        let found = answer.variables.get(name).map(|v| v.version);
                        prop_assert_eq!(
                            found,
                            model.vars.get(name).map(|(_, v)| *v),
                            "`{}` in {:?}",
                            name,
                            answer
                        );
                    }
                }
                Err(status) => refused(
                    "get",
                    &BridgeError::from_status(&status),
                    &[ErrorKind::InvalidArgument].into(),
                )?,
            }
        }
    }
    Ok(())
}

#[test]
fn arbitrary_names_and_batches_keep_the_session_as_the_model_says() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = runtime.block_on(async { Engine::new() });
    check(
        "engine-state-sequences",
        256,
        prop::collection::vec(op(), 1..24),
        |ops| {
            runtime.block_on(async {
                let session = engine
                    .initialize_session(Request::new(pb::InitializeSessionRequest::default()))
                    .await
                    .expect("a session")
                    .into_inner()
                    .session
                    .expect("a session")
                    .session_id;
                let mut model = Model::default();
                for op in ops {
                    step(&engine, &session, &mut model, op.clone()).await?;
                    let (vars, sequence) = observed(&engine, &session).await;
                    prop_assert_eq!(&vars, &model.vars, "after {:?}", op);
                    prop_assert_eq!(sequence, model.sequence, "after {:?}", op);
                }
                engine
                    .cleanup_session(Request::new(pb::CleanupSessionRequest {
                        session_id: session,
                    }))
                    .await
                    .expect("cleanup");
                Ok(())
            })
        },
    );
}
