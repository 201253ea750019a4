//! Compiles the vendored Dapr protos with protox (no `protoc` needed) and generates the prost
//! messages and tonic services, plus the descriptor set for code that reads the API's shape.

use std::path::PathBuf;

/// The vendored files, relative to `vendor/` (the `dapr/proto/...` tree of the Dapr release
/// named in `vendor/dapr/VERSION`).
const PROTOS: &[&str] = &[
    "dapr/proto/common/v1/common.proto",
    "dapr/proto/runtime/v1/dapr.proto",
    "dapr/proto/runtime/v1/appcallback.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=vendor");
    let descriptors = protox::compile(PROTOS, ["vendor"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("dapr_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
