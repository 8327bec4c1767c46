//! Access rules: what each `MLBridge` request needs of the caller's token, in one table.
//! `Engine::authorize` applies them at the top of every handler.

use mlbridge_proto::mlbridge::v1 as pb;

use crate::auth::{Access, Guarded};

/// The session-less access of a request that names none (any valid token will do).
fn any_session<'a>() -> Access<'a> {
    Access::default()
}

/// Reading session `session` (no particular variable).
fn reading(session: &str) -> Access<'_> {
    Access {
        session,
        ..Access::default()
    }
}

/// Changing session `session` other than through variables.
fn mutating(session: &str) -> Access<'_> {
    Access {
        session,
        mutates: true,
        ..Access::default()
    }
}

macro_rules! rules {
    ($($request:ident => |$r:ident| $access:expr;)*) => {
        $(impl Guarded for pb::$request {
            fn access(&self) -> Access<'_> {
                let $r = self;
                $access
            }
        })*
    };
}

rules! {
    PingRequest => |_r| any_session();
    DescribeAdaptersRequest => |_r| any_session();
    // Creating a session needs no token; joining one is checked by the handler.
    InitializeSessionRequest => |r| reading(&r.session_id);
    GetSessionRequest => |r| reading(&r.session_id);
    HeartbeatRequest => |r| reading(&r.session_id);
    CleanupSessionRequest => |r| Access { full: true, ..mutating(&r.session_id) };
    RegisterVariableRequest => |r| Access {
        writes: vec![&r.name],
        reads: r.depends_on.iter().map(String::as_str).collect(),
        ..reading(&r.session_id)
    };
    GetVariableRequest => |r| Access { reads: vec![&r.name], ..reading(&r.session_id) };
    SetVariableRequest => |r| Access { writes: vec![&r.name], ..reading(&r.session_id) };
    DeleteVariableRequest => |r| Access { writes: vec![&r.name], ..reading(&r.session_id) };
    // Listing is filtered by the token's globs rather than refused.
    ListVariablesRequest => |r| reading(&r.session_id);
    GetVariablesRequest => |r| Access {
        reads: r.names.iter().map(String::as_str).collect(),
        ..reading(&r.session_id)
    };
    SetVariablesRequest => |r| Access {
        writes: r.writes.iter().map(|w| w.name.as_str()).collect(),
        ..reading(&r.session_id)
    };
    GetVariableHistoryRequest => |r| Access { reads: vec![&r.name], ..reading(&r.session_id) };
    RollbackVariableRequest => |r| Access { writes: vec![&r.name], ..reading(&r.session_id) };
    // Named variables are checked; a watch of everything is filtered.
    WatchVariablesRequest => |r| Access {
        reads: r.names.iter().map(String::as_str).collect(),
        ..reading(&r.session_id)
    };
    StartOptimizationRequest => |r| Access {
        writes: r.variable_names.iter().map(String::as_str).collect(),
        ..mutating(&r.session_id)
    };
    StopOptimizationRequest => |r| Access {
        writes: r.final_values.keys().map(String::as_str).collect(),
        ..mutating(&r.session_id)
    };
    RegisterToolsRequest => |r| Access { tools: true, ..mutating(&r.session_id) };
    ListToolsRequest => |r| reading(&r.session_id);
    ExecuteToolRequest => |r| Access { tools: true, ..reading(&r.session_id) };
    ExecuteStreamingToolRequest => |r| Access { tools: true, ..reading(&r.session_id) };
    ExecuteFrameworkOperationRequest => |r| Access {
        operations: true,
        reads: r
            .parameters
            .values()
            .filter_map(|p| match &p.kind {
                Some(pb::parameter_value::Kind::Binding(b)) => Some(b.variable_name.as_str()),
                _ => None,
            })
            .collect(),
        ..reading(&r.session_id)
    };
    RegisterCallbackRequest => |r| Access { tools: true, ..mutating(&r.session_id) };
    UnregisterCallbackRequest => |r| Access { tools: true, ..mutating(&r.session_id) };
    InvokeCallbackRequest => |r| Access { tools: true, ..reading(&r.session_id) };
    CreateResourceRequest => |r| Access { operations: true, ..mutating(&r.session_id) };
    InvokeResourceRequest => |r| Access { operations: true, ..mutating(&r.session_id) };
    ReleaseResourceRequest => |r| Access { operations: true, ..mutating(&r.session_id) };
    ListResourcesRequest => |r| reading(&r.session_id);
    // Minting checks narrowing itself; revoking checks the token tree.
    MintTokenRequest => |r| reading(&r.session_id);
    RevokeTokenRequest => |r| reading(&r.session_id);
    ListTokensRequest => |r| reading(&r.session_id);
}
