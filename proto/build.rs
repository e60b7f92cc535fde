//! Compiles `heist/v1/*.proto` in pure Rust (protox, no system `protoc`) into
//! tonic clients and servers, and writes the descriptor set for reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "heist/v1/audit.proto",
    "heist/v1/memory.proto",
    "heist/v1/oauth.proto",
    "heist/v1/tool.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=heist");
    // Paths are given relative to the include root so that the names in the
    // descriptor set match the import paths (grpcurl needs that).
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("heist_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
