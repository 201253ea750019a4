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

/// The messages of `google.rpc` that carry Dapr's rich error details: a `Status` encoded into the
/// `grpc-status-details-bin` trailer, holding `ErrorInfo` (a reason such as
/// `DAPR_STATE_NOT_FOUND`), `ResourceInfo` (the component concerned) and `BadRequest` (the field
/// that was wrong). Field numbers follow
/// `google/rpc/status.proto` and `google/rpc/error_details.proto`.
pub mod google {
    /// `google.rpc`.
    pub mod rpc {
        /// `google.rpc.Status`.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Status {
            /// The gRPC status code.
            #[prost(int32, tag = "1")]
            pub code: i32,
            /// The error message, in English.
            #[prost(string, tag = "2")]
            pub message: String,
            /// Typed details, such as [`ErrorInfo`].
            #[prost(message, repeated, tag = "3")]
            pub details: Vec<prost_types::Any>,
        }

        /// `google.rpc.ErrorInfo`: why the call failed, as a stable reason.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ErrorInfo {
            /// An upper-case identifier of the cause, unique within `domain`.
            #[prost(string, tag = "1")]
            pub reason: String,
            /// The service that produced the error (`dapr.io`).
            #[prost(string, tag = "2")]
            pub domain: String,
            /// More about the cause.
            #[prost(btree_map = "string, string", tag = "3")]
            pub metadata: std::collections::BTreeMap<String, String>,
        }

        /// `google.rpc.ResourceInfo`: the resource the failure concerns.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ResourceInfo {
            /// Its kind, e.g. `state`.
            #[prost(string, tag = "1")]
            pub resource_type: String,
            /// Its name.
            #[prost(string, tag = "2")]
            pub resource_name: String,
            /// Who owns it, if known.
            #[prost(string, tag = "3")]
            pub owner: String,
            /// What went wrong with it.
            #[prost(string, tag = "4")]
            pub description: String,
        }

        /// `google.rpc.BadRequest`: which fields of the request were wrong.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct BadRequest {
            /// One entry per wrong field.
            #[prost(message, repeated, tag = "1")]
            pub field_violations: Vec<FieldViolation>,
        }

        /// `google.rpc.BadRequest.FieldViolation`.
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct FieldViolation {
            /// The field, or the value that was wrong.
            #[prost(string, tag = "1")]
            pub field: String,
            /// Why.
            #[prost(string, tag = "2")]
            pub description: String,
        }

        /// The type URL of `ErrorInfo` in a `google.protobuf.Any`.
        pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
        /// The type URL of `ResourceInfo` in a `google.protobuf.Any`.
        pub const RESOURCE_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ResourceInfo";
        /// The type URL of `BadRequest` in a `google.protobuf.Any`.
        pub const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
    }
}
