//! `*_pb2_grpc.py`: a stub, a servicer and `add_<Service>Servicer_to_server` per service,
//! for all four RPC shapes, usable unchanged with `grpc` and `grpc.aio`. (The matching
//! `*_pb2_grpc.pyi` is written by `pyi`; both read the model in `services`.)

use askama::Template;
use prost_reflect::FileDescriptor;

use super::PythonContext;
use super::services::{self, Service};
use crate::error::Result;
use crate::names;

#[derive(Template)]
#[template(path = "python/pb2_grpc.py", escape = "none")]
struct GrpcModule<'a> {
    header: &'a str,
    source: &'a str,
    /// The module's own path, which its version check names.
    path: String,
    grpc_version: &'a str,
    imports: Vec<String>,
    services: Vec<Service>,
}

/// Renders `*_pb2_grpc.py` for `file`.
pub(crate) fn render(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Result<String> {
    let module = GrpcModule {
        header: super::HEADER,
        source: file.name(),
        path: ctx.path(file.name(), "_pb2_grpc.py"),
        grpc_version: &ctx.settings.grpc_version.text,
        imports: message_imports(ctx, file),
        services: services::services(ctx, file),
    };
    super::render_template("python/pb2_grpc.py", &module)
}

/// `from a.b import c_pb2 as a_dot_b_dot_c__pb2` for every file whose messages the
/// services use, sorted as protoc's plugin sorts them.
fn message_imports(ctx: &PythonContext<'_>, file: &FileDescriptor) -> Vec<String> {
    let mut modules: Vec<String> = file
        .services()
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .flat_map(|method| [method.input(), method.output()])
        .map(|message| ctx.module(message.parent_file().name(), "_pb2"))
        .collect();
    modules.sort();
    modules.dedup();
    modules
        .into_iter()
        .map(|module| {
            let alias = names::python_module_alias(&module);
            match module.rsplit_once('.') {
                Some((parent, leaf)) => format!("from {parent} import {leaf} as {alias}"),
                None => format!("import {module} as {alias}"),
            }
        })
        .collect()
}
