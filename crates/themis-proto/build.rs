//! Compiles `proto/themis_wire_v1.proto` with protox (pure Rust), so building needs no
//! system `protoc`. `compile_fds` is the only prost-build entry point that does not
//! shell out to `protoc`.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Canonical, so the include root has no `..` for protox to trip over; the file is
    // named relative to it, wherever the checkout lives.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .join("../../proto")
        .canonicalize()?;
    println!(
        "cargo:rerun-if-changed={}",
        root.join("themis_wire_v1.proto").display()
    );
    let fds = protox::compile(["themis_wire_v1.proto"], [&root])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
