//! `*_pb2_grpc.pyi`: the stub, servicer and registration function of each service, typed
//! for `grpc` and `grpc.aio` alike.

use askama::Template;
use prost_reflect::{FileDescriptor, MethodDescriptor};
use prost_types::ServiceOptions;

use super::deprecation::{Kind as Deprecated, deprecation, file_deprecated, is_deprecated};
use super::types::{Helper, TypeNames};
use super::{Alias, docstring, global_alias};
use crate::comments::{self, Comments};
use crate::error::Result;
use crate::python::services::{self, Method};
use crate::python::{self, PythonContext};

/// Renders `*_pb2_grpc.pyi` for `file`.
pub(crate) fn render_grpc(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Result<String> {
    let services = services::services(ctx, file);
    let mut types = TypeNames::new(ctx, None);
    // The template's fixed part: the context and iterator helpers, stubs and servicers.
    for helper in [
        Helper::Abc,
        Helper::CollectionsAbc,
        Helper::Grpc,
        Helper::GrpcAio,
        Helper::Typing,
        Helper::TypingExtensions,
    ] {
        types.imports.require(helper);
    }
    let comments = Comments::new(file.file_descriptor_proto());
    let file_deprecated = file_deprecated(file);
    let client_streaming = services
        .iter()
        .flat_map(|service| &service.methods)
        .any(|method| method.client_streaming);
    // `services` is built from `file.services()`, in the same order.
    let services: Vec<ServiceStub> = services
        .iter()
        .zip(file.services())
        .enumerate()
        .map(|(index, (service, descriptor))| {
            let path = comments::path::service(index);
            let own = is_deprecated(
                &descriptor.service_descriptor_proto().options,
                ServiceOptions::deprecated,
            );
            let deprecated = |kind| deprecation(&comments, kind, &path, own, file_deprecated);
            let methods = service
                .methods
                .iter()
                .zip(descriptor.methods())
                .enumerate()
                .map(|(i, (method, descriptor))| {
                    let path = comments::path::child(&path, 2, i);
                    let deprecated = deprecation(
                        &comments,
                        Deprecated::Method,
                        &path,
                        method.deprecated,
                        file_deprecated,
                    );
                    method_stub(&mut types, method, &descriptor, deprecated)
                })
                .collect();
            ServiceStub::new(
                &service.name,
                service.doc.as_deref().map(|doc| docstring(doc, "    ")),
                [
                    deprecated(Deprecated::Stub),
                    own.then(|| deprecated(Deprecated::Stub)).flatten(),
                    deprecated(Deprecated::Servicer),
                ],
                methods,
            )
        })
        .collect();
    let stub = GrpcStub {
        header: python::HEADER,
        source: file.name(),
        client_streaming,
        imports: types.imports.groups(),
        services,
    };
    python::render_template("python/pb2_grpc.pyi", &stub)
}

/// One method of a service, `deprecated` (by itself or by its service or file) or not.
fn method_stub(
    types: &mut TypeNames<'_>,
    method: &Method,
    descriptor: &MethodDescriptor,
    deprecated: Option<String>,
) -> MethodStub {
    if deprecated.is_some() {
        types.imports.require(Helper::Builtins);
    }
    let request = types.message(&descriptor.input());
    let response = types.message(&descriptor.output());
    let callable = match (method.client_streaming, method.server_streaming) {
        (false, false) => "UnaryUnaryMultiCallable",
        (false, true) => "UnaryStreamMultiCallable",
        (true, false) => "StreamUnaryMultiCallable",
        (true, true) => "StreamStreamMultiCallable",
    };
    let (request_param, request_type) = if method.client_streaming {
        (
            "request_iterator",
            format!("_MaybeAsyncIterator[{request}]"),
        )
    } else {
        ("request", request.clone())
    };
    let response_type = if method.server_streaming {
        let iterator = types.helper(Helper::CollectionsAbc, "Iterator");
        let async_iterator = types.helper(Helper::CollectionsAbc, "AsyncIterator");
        format!("{iterator}[{response}] | {async_iterator}[{response}]")
    } else {
        let awaitable = types.helper(Helper::CollectionsAbc, "Awaitable");
        format!("{response} | {awaitable}[{response}]")
    };
    MethodStub {
        attr: method.attr.clone(),
        attr_doc: method.doc.as_deref().map(|doc| docstring(doc, "    ")),
        body_doc: method.doc.as_deref().map(|doc| docstring(doc, "        ")),
        deprecated,
        callable,
        request,
        response,
        request_param,
        request_type,
        response_type,
    }
}

/// `*_pb2_grpc.pyi`.
#[derive(Template)]
#[template(path = "python/pb2_grpc.pyi", escape = "none")]
struct GrpcStub<'a> {
    header: &'a str,
    source: &'a str,
    imports: Vec<Vec<String>>,
    /// Whether any method takes a request stream (and so needs `_MaybeAsyncIterator`).
    client_streaming: bool,
    services: Vec<ServiceStub>,
}

/// One service: its stubs, servicer and registration function.
struct ServiceStub {
    name: String,
    /// The docstring literal for the stub and servicer classes.
    doc: Option<String>,
    /// The `@deprecated` arguments of the stub, the asyncio stub (only for a service that
    /// is itself deprecated, as mypy-protobuf has it) and the servicer with its
    /// registration function.
    stub_deprecated: Option<String>,
    async_deprecated: Option<String>,
    servicer_deprecated: Option<String>,
    /// How the stub names its three classes: through an alias when deprecated. The
    /// stub's alias is declared before the asyncio stub's class (its base), the others
    /// after the registration function.
    stub_ref: String,
    async_ref: String,
    servicer_ref: String,
    stub_alias: Option<Alias>,
    aliases: Vec<Alias>,
    methods: Vec<MethodStub>,
}

impl ServiceStub {
    fn new(
        name: &str,
        doc: Option<String>,
        [stub_deprecated, async_deprecated, servicer_deprecated]: [Option<String>; 3],
        methods: Vec<MethodStub>,
    ) -> Self {
        // The name the stub uses for `class`, and its alias if `deprecated`.
        let reference = |class: String, deprecated: bool| {
            if !deprecated {
                return (class, None);
            }
            let alias = global_alias(&class);
            let declared = Alias {
                name: alias.clone(),
                target: class,
                deprecated: true,
            };
            (alias, Some(declared))
        };
        let (stub_ref, stub_alias) = reference(format!("{name}Stub"), stub_deprecated.is_some());
        let (async_ref, async_alias) =
            reference(format!("{name}AsyncStub"), async_deprecated.is_some());
        let (servicer_ref, servicer_alias) =
            reference(format!("{name}Servicer"), servicer_deprecated.is_some());
        let aliases = async_alias.into_iter().chain(servicer_alias).collect();
        ServiceStub {
            name: name.to_owned(),
            doc,
            stub_deprecated,
            async_deprecated,
            servicer_deprecated,
            stub_ref,
            async_ref,
            servicer_ref,
            stub_alias,
            aliases,
            methods,
        }
    }
}

/// One method, on the stubs and the servicer.
struct MethodStub {
    /// The attribute name, as `_pb2_grpc.py` spells it (keywords get a trailing `_`).
    attr: String,
    /// The docstring literal after the stub attribute and inside the servicer method.
    attr_doc: Option<String>,
    body_doc: Option<String>,
    /// The `@deprecated` argument, if the method is deprecated.
    deprecated: Option<String>,
    /// The multi-callable class, in `grpc` and `grpc.aio` alike.
    callable: &'static str,
    request: String,
    response: String,
    request_param: &'static str,
    /// What the servicer receives: a request, or an iterator usable with `for` and `async for`.
    request_type: String,
    /// What the servicer returns: a response or stream, directly or from a coroutine.
    response_type: String,
}
