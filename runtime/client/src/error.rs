//! One error model for the engine and its clients: [`BridgeError`] carries an [`ErrorKind`],
//! a message naming what is wrong, and context; on the wire it travels as a serialized
//! `mlbridge.v1.BridgeError` in the gRPC status details.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use mlbridge_proto::mlbridge::v1 as pb;
use prost::Message;
use tonic::{Code, Status};

pub use pb::ErrorKind;

/// Characters of client text (a value, a name, a pattern) an error message quotes at most.
pub const QUOTE_CHARS: usize = pb::ErrorTextLimit::Quote as usize;
/// Characters of a context value kept at most (every valid name fits).
pub const CONTEXT_CHARS: usize = pb::ErrorTextLimit::Context as usize;
/// Characters of a message kept at most, whatever it quotes.
pub const MESSAGE_CHARS: usize = pb::ErrorTextLimit::Message as usize;
/// Characters of a remote traceback kept at most (its end, where the failure is).
pub const TRACEBACK_CHARS: usize = pb::ErrorTextLimit::Traceback as usize;

/// `text` as an error message quotes it: whole up to [`QUOTE_CHARS`] characters, else its
/// start and a marker saying how much was left out, so that no error carrying client text
/// can outgrow gRPC's metadata limit.
pub fn clip(text: &str) -> Cow<'_, str> {
    clip_to(text, QUOTE_CHARS)
}

/// `text` cut to its first characters plus a marker, `limit` characters all told, if it is
/// longer (so clipping twice changes nothing).
pub fn clip_to(text: &str, limit: usize) -> Cow<'_, str> {
    let count = text.chars().count();
    if count <= limit {
        return Cow::Borrowed(text);
    }
    let kept = limit.saturating_sub(format!("…[{count} more characters]").chars().count());
    let end = text.char_indices().nth(kept).map_or(text.len(), |(i, _)| i);
    Cow::Owned(format!(
        "{}…[{} more characters]",
        &text[..end],
        count - kept
    ))
}

/// The end of `text` after a marker, `limit` characters all told, if it is longer.
fn clip_start(text: &str, limit: usize) -> Cow<'_, str> {
    let count = text.chars().count();
    if count <= limit {
        return Cow::Borrowed(text);
    }
    let kept = limit.saturating_sub(format!("[{count} characters left out]…").chars().count());
    let start = text
        .char_indices()
        .nth(count - kept)
        .map_or(text.len(), |(i, _)| i);
    Cow::Owned(format!(
        "[{} characters left out]…{}",
        count - kept,
        &text[start..]
    ))
}

/// Result alias for engine and client operations.
pub type Result<T, E = BridgeError> = std::result::Result<T, E>;

/// A structured failure: what kind, what happened, and the details that name the culprit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeError {
    /// The category; decides the gRPC code and the Python exception class.
    pub kind: ErrorKind,
    /// Human-readable description naming the session, variable or value at fault.
    pub message: String,
    /// Machine-readable details (`variable`, `expected_version`, ...).
    pub context: BTreeMap<String, String>,
    /// For failures raised by foreign code: the exception type.
    pub remote_type: String,
    /// For failures raised by foreign code: the traceback.
    pub remote_traceback: String,
    /// Where the error was raised (`engine`, `worker:<id>`, ...).
    pub origin: String,
    /// The error this one wraps, if any.
    pub cause: Option<Box<BridgeError>>,
}

impl BridgeError {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BridgeError {
            kind,
            message: message.into(),
            context: BTreeMap::new(),
            remote_type: String::new(),
            remote_traceback: String::new(),
            origin: String::new(),
            cause: None,
        }
    }

    /// Adds a context entry.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        let value = match clip_to(&value, CONTEXT_CHARS) {
            Cow::Borrowed(_) => value,
            Cow::Owned(clipped) => clipped,
        };
        self.context.insert(key.to_owned(), value);
        self
    }

    /// `INVALID_ARGUMENT`, naming the offending request field.
    pub fn invalid_argument(field: &str, message: impl Into<String>) -> Self {
        BridgeError::new(ErrorKind::InvalidArgument, message).with("field", field)
    }

    /// `SESSION_NOT_FOUND`.
    pub fn session_not_found(session_id: &str) -> Self {
        BridgeError::new(
            ErrorKind::SessionNotFound,
            format!("session `{}` not found", clip(session_id)),
        )
        .with("session_id", session_id)
    }

    /// `VARIABLE_NOT_FOUND`.
    pub fn variable_not_found(session_id: &str, name: &str) -> Self {
        BridgeError::new(
            ErrorKind::VariableNotFound,
            format!(
                "variable `{}` not found in session `{}`",
                clip(name),
                clip(session_id)
            ),
        )
        .with("session_id", session_id)
        .with("variable", name)
    }

    /// `INTERNAL`: a broken invariant.
    pub fn internal(message: impl Into<String>) -> Self {
        BridgeError::new(ErrorKind::Internal, message)
    }

    /// The gRPC code that carries this kind (from the schema's `grpc_code` option).
    pub fn code(&self) -> Code {
        self.kind.grpc_code()
    }

    /// Whether a client may retry the call that failed (from the schema's `retryable` option).
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }

    /// Builds the error a client sees from a failed call: the details when the server
    /// sent them, otherwise one built from the status code.
    pub fn from_status(status: &Status) -> Self {
        if !status.details().is_empty()
            && let Ok(error) = pb::BridgeError::decode(status.details())
        {
            return error.into();
        }
        let kind = match status.code() {
            Code::Unavailable => ErrorKind::Unavailable,
            Code::DeadlineExceeded => ErrorKind::Timeout,
            _ => ErrorKind::Unspecified,
        };
        // A status made on this side from a transport failure (the connection dropped, a
        // TLS peer refused our certificate, ...) carries the reason in its causes only.
        let mut message = format!("{:?}: {}", status.code(), status.message());
        let mut cause = std::error::Error::source(status);
        while let Some(next) = cause {
            let text = next.to_string();
            if !message.contains(&text) {
                message.push_str(&format!(": {text}"));
            }
            cause = next.source();
        }
        BridgeError::new(kind, message).with("grpc_code", format!("{:?}", status.code()))
    }
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str_name(), self.message)
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl From<BridgeError> for pb::BridgeError {
    /// The wire form, bounded whatever the error carries: the message, context values and
    /// the remote type are clipped, the traceback keeps its end, and one cause at most is
    /// kept, so that the status always fits in gRPC's metadata.
    fn from(error: BridgeError) -> Self {
        pb::BridgeError {
            kind: error.kind as i32,
            message: clip_to(&error.message, MESSAGE_CHARS).into_owned(),
            context: error
                .context
                .iter()
                .map(|(k, v)| {
                    let value = clip_to(v, CONTEXT_CHARS).into_owned();
                    (clip_to(k, CONTEXT_CHARS).into_owned(), value)
                })
                .collect(),
            remote_type: clip_to(&error.remote_type, CONTEXT_CHARS).into_owned(),
            remote_traceback: clip_start(&error.remote_traceback, TRACEBACK_CHARS).into_owned(),
            origin: clip_to(&error.origin, CONTEXT_CHARS).into_owned(),
            cause: error.cause.map(|c| {
                let mut cause: pb::BridgeError = (*c).into();
                cause.cause = None;
                Box::new(cause)
            }),
        }
    }
}

impl From<pb::BridgeError> for BridgeError {
    fn from(error: pb::BridgeError) -> Self {
        BridgeError {
            kind: ErrorKind::try_from(error.kind).unwrap_or(ErrorKind::Unspecified),
            message: error.message,
            context: error.context.into_iter().collect(),
            remote_type: error.remote_type,
            remote_traceback: error.remote_traceback,
            origin: error.origin,
            cause: error.cause.map(|c| Box::new((*c).into())),
        }
    }
}

impl From<BridgeError> for Status {
    fn from(error: BridgeError) -> Self {
        let code = error.code();
        let error = pb::BridgeError::from(error);
        let details = error.encode_to_vec();
        Status::with_details(code, error.message, details.into())
    }
}

impl From<Status> for BridgeError {
    fn from(status: Status) -> Self {
        BridgeError::from_status(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_status() {
        let error = BridgeError::variable_not_found("s1", "temperature");
        let status = Status::from(error.clone());
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "variable `temperature` not found in session `s1`"
        );
        assert_eq!(BridgeError::from_status(&status), error);
    }

    #[test]
    fn text_is_clipped_within_its_limit_and_clipping_twice_changes_nothing() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(250);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), QUOTE_CHARS);
        assert!(clipped.ends_with("…[172 more characters]"), "{clipped}");
        assert_eq!(clip(&clipped), clipped);
        let traceback = format!("{}END", "t".repeat(5000));
        let tail = clip_start(&traceback, 100);
        assert_eq!(tail.chars().count(), 100);
        assert!(tail.starts_with("[") && tail.ends_with("tEND"), "{tail}");
        assert_eq!(clip_start(&tail, 100), tail);
    }

    #[test]
    fn the_wire_form_is_bounded_whatever_the_error_carries() {
        let mut error = BridgeError::new(ErrorKind::InvalidArgument, "m".repeat(50_000))
            .with(&"k".repeat(1000), "v".repeat(50_000));
        error.remote_traceback = "t".repeat(50_000);
        let inner = BridgeError::new(ErrorKind::Internal, "dropped");
        let mut cause = BridgeError::new(ErrorKind::Internal, "cause");
        cause.cause = Some(Box::new(inner));
        error.cause = Some(Box::new(cause));
        let status = Status::from(error);
        assert!(status.details().len() < 4096, "{}", status.details().len());
        assert_eq!(status.message().chars().count(), MESSAGE_CHARS);
        let back = BridgeError::from_status(&status);
        assert_eq!(back.remote_traceback.chars().count(), TRACEBACK_CHARS);
        assert!(back.cause.as_ref().is_some_and(|c| c.cause.is_none()));
    }

    #[test]
    fn a_status_without_details_is_classified_by_code() {
        let error = BridgeError::from_status(&Status::unavailable("connection refused"));
        assert_eq!(error.kind, ErrorKind::Unavailable);
        let error = BridgeError::from_status(&Status::internal("boom"));
        assert_eq!(error.kind, ErrorKind::Unspecified);
    }
}
