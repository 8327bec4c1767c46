//! The services of a `.proto` file as the Python gRPC module and its stub both need them:
//! names, RPC shapes, message classes and docstrings.

use prost_reflect::{FileDescriptor, MessageDescriptor, MethodDescriptor, ServiceDescriptor};

use super::PythonContext;
use crate::comments::{self, Comments};
use crate::names;

/// One service as the templates need it.
pub(crate) struct Service {
    /// The proto name, e.g. `KitchenService`.
    pub name: String,
    /// `package.Service`, the gRPC service name.
    pub full_name: String,
    pub doc: Option<String>,
    /// The class docstring as grpcio-tools writes it (closing quotes at 4 spaces).
    pub grpc_doc: String,
    pub methods: Vec<Method>,
}

/// One method as the templates need it.
pub(crate) struct Method {
    /// The name on the wire, e.g. `async`.
    pub name: String,
    /// The Python attribute name: the wire name, with keywords escaped (`async_`).
    pub attr: String,
    /// `unary_unary`, `unary_stream`, `stream_unary` or `stream_stream`.
    pub shape: &'static str,
    pub client_streaming: bool,
    pub server_streaming: bool,
    /// Python expressions for the request and response classes.
    pub request: String,
    pub response: String,
    pub doc: Option<String>,
    /// The servicer method's docstring as grpcio-tools writes it (at 8 spaces).
    pub grpc_doc: String,
    pub deprecated: bool,
}

/// The services of `file`, in declaration order.
pub(crate) fn services(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Vec<Service> {
    let comments = Comments::new(file.file_descriptor_proto());
    file.services()
        .map(|service| service_model(ctx, &comments, &service))
        .collect()
}

fn service_model(
    ctx: &PythonContext<'_>,
    comments: &Comments,
    service: &ServiceDescriptor,
) -> Service {
    let service_path = comments::path::service(service.index());
    Service {
        name: service.name().to_owned(),
        full_name: service.full_name().to_owned(),
        doc: comments.get(&service_path).map(comments::python_docstring),
        grpc_doc: comments.grpc_docstring(&service_path, "    "),
        methods: service
            .methods()
            .map(|method| method_model(ctx, comments, &service_path, &method))
            .collect(),
    }
}

fn method_model(
    ctx: &PythonContext<'_>,
    comments: &Comments,
    service_path: &[i32],
    method: &MethodDescriptor,
) -> Method {
    let shape = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => "unary_unary",
        (false, true) => "unary_stream",
        (true, false) => "stream_unary",
        (true, true) => "stream_stream",
    };
    let method_path = comments::path::child(service_path, 2, method.index());
    Method {
        name: method.name().to_owned(),
        attr: names::python_identifier(method.name()),
        shape,
        client_streaming: method.is_client_streaming(),
        server_streaming: method.is_server_streaming(),
        request: message_expression(ctx, &method.input()),
        response: message_expression(ctx, &method.output()),
        doc: comments.get(&method_path).map(comments::python_docstring),
        grpc_doc: comments.grpc_docstring(&method_path, "        "),
        deprecated: method
            .method_descriptor_proto()
            .options
            .as_ref()
            .is_some_and(|o| o.deprecated()),
    }
}

/// The Python expression for a message class through its module alias, e.g.
/// `a__pb2.Outer.Inner`; names that are keywords are reached with `getattr`.
fn message_expression(ctx: &PythonContext<'_>, message: &MessageDescriptor) -> String {
    let module = ctx.module(message.parent_file().name(), "_pb2");
    let mut expression = names::python_module_alias(&module);
    let package = message.package_name();
    let relative = message
        .full_name()
        .strip_prefix(package)
        .map(|rest| rest.trim_start_matches('.'))
        .unwrap_or(message.full_name());
    for part in relative.split('.') {
        if names::is_python_keyword(part) {
            expression = format!("getattr({expression}, '{part}')");
        } else {
            expression = format!("{expression}.{part}");
        }
    }
    expression
}
