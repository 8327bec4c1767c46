//! One error model for the engine and its clients: [`BridgeError`] carries an [`ErrorKind`],
//! a message naming what is wrong, and context; on the wire it travels as a serialized
//! `mlbridge.v1.BridgeError` in the gRPC status details.

use std::collections::BTreeMap;
use std::fmt;

use mlbridge_proto::mlbridge::v1 as pb;
use prost::Message;
use tonic::{Code, Status};

pub use pb::ErrorKind;

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
        self.context.insert(key.to_owned(), value.to_string());
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
            format!("session `{session_id}` not found"),
        )
        .with("session_id", session_id)
    }

    /// `VARIABLE_NOT_FOUND`.
    pub fn variable_not_found(session_id: &str, name: &str) -> Self {
        BridgeError::new(
            ErrorKind::VariableNotFound,
            format!("variable `{name}` not found in session `{session_id}`"),
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
        BridgeError::new(kind, format!("{:?}: {}", status.code(), status.message()))
            .with("grpc_code", format!("{:?}", status.code()))
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
    fn from(error: BridgeError) -> Self {
        pb::BridgeError {
            kind: error.kind as i32,
            message: error.message,
            context: error.context.into_iter().collect(),
            remote_type: error.remote_type,
            remote_traceback: error.remote_traceback,
            origin: error.origin,
            cause: error.cause.map(|c| Box::new((*c).into())),
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
        let details = fit_for_transport(pb::BridgeError::from(error));
        let message = clip(&details.message, STATUS_MESSAGE_BYTES);
        Status::with_details(code, message, details.encode_to_vec().into())
    }
}

/// Longest status message (`grpc-message`, percent-encoded on the wire: up to 3 bytes per
/// byte) sent; the full message, within [`DETAILS_BYTES`], is in the details.
const STATUS_MESSAGE_BYTES: usize = 512;
/// Largest encoded `BridgeError` sent in the details (base64 on the wire: 4/3 larger).
/// With the status message, well below gRPC's 8 KiB default metadata limit, beyond which
/// clients refuse the whole response (RESOURCE_EXHAUSTED) and the error is lost.
const DETAILS_BYTES: usize = 4096;

/// `text` cut to at most `max` bytes (at a character boundary) with a marker saying how
/// much was left out; unchanged when it fits.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes clipped]", &text[..end], text.len() - end)
}

/// `text` cut to its last `max` bytes or so (a traceback ends with what matters), with a
/// marker saying how much was left out; unchanged when it fits.
fn clip_front(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max.saturating_sub(40);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[{start} bytes clipped] ...{}", &text[start..])
}

/// The error shrunk until it fits [`DETAILS_BYTES`]: a last line of defence for errors
/// that quote large client text, so that they still arrive as themselves. Long fields are
/// clipped first, then the cause, traceback and context entries are dropped.
fn fit_for_transport(mut error: pb::BridgeError) -> pb::BridgeError {
    if error.encoded_len() <= DETAILS_BYTES {
        return error;
    }
    error.message = clip(&error.message, 1024);
    error.remote_type = clip(&error.remote_type, 256);
    error.origin = clip(&error.origin, 256);
    error.remote_traceback = clip_front(&error.remote_traceback, 2048);
    error.context = std::mem::take(&mut error.context)
        .into_iter()
        .map(|(key, value)| (clip(&key, 128), clip(&value, 256)))
        .collect();
    error.cause = error.cause.map(|cause| Box::new(fit_for_transport(*cause)));
    if error.encoded_len() > DETAILS_BYTES {
        error.cause = None;
    }
    if error.encoded_len() > DETAILS_BYTES {
        error.remote_traceback = clip_front(&error.remote_traceback, 512);
    }
    // Context entries go largest first until the rest fits.
    while error.encoded_len() > DETAILS_BYTES && !error.context.is_empty() {
        let largest = error
            .context
            .iter()
            .max_by_key(|(key, value)| key.len() + value.len())
            .map(|(key, _)| key.clone())
            .unwrap_or_default();
        error.context.remove(&largest);
    }
    error
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
    fn an_error_quoting_huge_text_still_fits_in_a_status() {
        let huge = "é".repeat(20_000);
        let mut error = BridgeError::session_not_found(&huge).with("session_id", &huge);
        for i in 0..100 {
            error = error.with(&format!("key{i}"), "x".repeat(500));
        }
        error.remote_traceback = format!("{huge}\nValueError: the last line");
        error.cause = Some(Box::new(BridgeError::invalid_argument("x", huge.clone())));
        let status = Status::from(error);
        assert_eq!(status.code(), Code::NotFound);
        assert!(
            status.message().len() <= STATUS_MESSAGE_BYTES,
            "{}",
            status.message().len()
        );
        assert!(
            status.message().ends_with("bytes clipped]"),
            "{}",
            status.message()
        );
        assert!(
            status.details().len() <= DETAILS_BYTES,
            "{}",
            status.details().len()
        );
        let back = BridgeError::from_status(&status);
        assert_eq!(back.kind, ErrorKind::SessionNotFound);
        assert!(back.message.starts_with("session `éé"), "{}", back.message);
        assert!(
            back.remote_traceback.ends_with("ValueError: the last line"),
            "{}",
            back.remote_traceback
        );
        // A small error is sent untouched.
        let small = BridgeError::variable_not_found("s", "v");
        assert_eq!(
            BridgeError::from_status(&Status::from(small.clone())),
            small
        );
    }

    #[test]
    fn a_status_without_details_is_classified_by_code() {
        let error = BridgeError::from_status(&Status::unavailable("connection refused"));
        assert_eq!(error.kind, ErrorKind::Unavailable);
        let error = BridgeError::from_status(&Status::internal("boom"));
        assert_eq!(error.kind, ErrorKind::Unspecified);
    }
}
