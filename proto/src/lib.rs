//! Dapr's gRPC API: the messages and services of `dapr.proto.common.v1` and
//! `dapr.proto.runtime.v1`, generated at build time from the protos vendored under `vendor/dapr/`
//! (the Dapr release is named in `vendor/dapr/VERSION`; the files keep their license headers).
//!
//! The sidecar serves [`runtime::v1::dapr_server::Dapr`] to apps and SDKs, and calls apps that
//! speak gRPC through [`runtime::v1::app_callback_client::AppCallbackClient`].

/// `dapr.proto.common.v1`: messages shared by the runtime API and the app callback.
pub mod common {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
        tonic::include_proto!("dapr.proto.common.v1");
    }
}

/// `dapr.proto.runtime.v1`: the `Dapr` service apps call and the `AppCallback` service the
/// sidecar calls.
pub mod runtime {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
        tonic::include_proto!("dapr.proto.runtime.v1");
    }
}

/// The encoded `FileDescriptorSet` of the vendored protos and their imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dapr_descriptor.bin"));

#[cfg(test)]
mod tests;
