//! The heist mesh's gRPC contracts, generated from `proto/heist/v1/*.proto`.
//!
//! One crate owns all code generation: every service and the orchestrator use
//! the clients, servers and messages in [`v1`], and serve [`FILE_DESCRIPTOR_SET`]
//! through reflection so that `grpcurl -plaintext HOST:PORT list` needs no files.

/// Package `heist.v1`: Audit, Memory, OAuth and Tool services and their messages.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("heist.v1");
}

/// The encoded `FileDescriptorSet` of every `heist.v1` file, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("heist_descriptor");
