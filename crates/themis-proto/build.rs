//! Compiles `proto/themis_wire_v1.proto` with protox (pure Rust), so building needs no
//! system `protoc`. `compile_fds` is the only prost-build entry point that does not
//! shell out to `protoc`.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("themis_wire_v1.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
