//! The heist mesh's gRPC contracts, generated from `proto/heist/v1/*.proto`.
//!
//! One crate owns all code generation: every service and the orchestrator use
//! the clients, servers and messages in [`v1`]. Each generated server knows
//! the descriptor set of the file that declares its service
//! ([`ServiceDescriptor`]), which its server's reflection serves, so that
//! `grpcurl -plaintext HOST:PORT list` needs no files and lists only what
//! that port hosts.

mod verdict;

/// Package `heist.v1`: Audit, Memory, OAuth and Tool services and their messages.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("heist.v1");
}

/// The encoded `FileDescriptorSet` of `heist/v1/audit.proto`, for reflection.
pub const AUDIT_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("audit_descriptor");
/// The encoded `FileDescriptorSet` of `heist/v1/memory.proto`, for reflection.
pub const MEMORY_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("memory_descriptor");
/// The encoded `FileDescriptorSet` of `heist/v1/oauth.proto`, for reflection.
pub const OAUTH_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("oauth_descriptor");
/// The encoded `FileDescriptorSet` of `heist/v1/tool.proto`, for reflection.
pub const TOOL_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tool_descriptor");

/// A server type that knows the descriptor set declaring its service, so a
/// server's reflection can describe exactly the service it hosts.
pub trait ServiceDescriptor {
    /// The encoded `FileDescriptorSet` of the file declaring the service
    /// (with its imports).
    const FILE_DESCRIPTOR_SET: &'static [u8];
}

macro_rules! described {
    ($($server:path => $set:ident),* $(,)?) => {
        $(impl<T> ServiceDescriptor for $server {
            const FILE_DESCRIPTOR_SET: &'static [u8] = $set;
        })*
    };
}

described! {
    v1::audit_service_server::AuditServiceServer<T> => AUDIT_DESCRIPTOR_SET,
    v1::memory_service_server::MemoryServiceServer<T> => MEMORY_DESCRIPTOR_SET,
    v1::o_auth_service_server::OAuthServiceServer<T> => OAUTH_DESCRIPTOR_SET,
    v1::tool_service_server::ToolServiceServer<T> => TOOL_DESCRIPTOR_SET,
}
