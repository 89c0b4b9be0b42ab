//! The gRPC contract between the controller and its agents, generated from `proto/`.
//! This crate owns the wire types only; conversions to domain types live with their users.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("mpanel.agent.v1");
}

/// The protocol revision this build speaks inside `v1`; bumped when fields are added.
pub const PROTOCOL_VERSION: u32 = 1;
