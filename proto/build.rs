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
        // RPCs the sidecar does not serve answer UNIMPLEMENTED without a line of ours each; the
        // server names the RPC in that answer before the stub is reached.
        .generate_default_stubs(true)
        // Payloads (state values, events, invocation data) are shared buffers, never copied
        // into vectors.
        .bytes(".")
        // Metadata maps are the components' own type: ordered, so answers are deterministic.
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
