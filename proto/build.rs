//! Compiles `heist/v1/*.proto` in pure Rust (protox, no system `protoc`) into
//! tonic clients and servers, and writes one descriptor set per file (with
//! its imports) so each server's reflection describes only its own service.

use std::{env, fs, path::PathBuf};

use prost::Message;

/// Each file and the name of its descriptor set in `OUT_DIR`.
const PROTOS: &[(&str, &str)] = &[
    ("heist/v1/audit.proto", "audit_descriptor"),
    ("heist/v1/memory.proto", "memory_descriptor"),
    ("heist/v1/oauth.proto", "oauth_descriptor"),
    ("heist/v1/tool.proto", "tool_descriptor"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=heist");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Paths are given relative to the include root so that the names in the
    // descriptor set match the import paths (grpcurl needs that).
    for (file, descriptor) in PROTOS {
        let one = protox::compile([file], ["."])?;
        fs::write(
            out_dir.join(format!("{descriptor}.bin")),
            one.encode_to_vec(),
        )?;
    }
    let descriptors = protox::compile(PROTOS.iter().map(|(file, _)| file), ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
