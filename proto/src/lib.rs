//! The gRPC contract between the controller and its agents, generated from `proto/`, and the
//! one place where wire messages and `mpanel_common` types turn into each other ([`convert`]).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("mpanel.agent.v1");
}

pub mod codec;
pub mod convert;

/// The protocol revision this build speaks inside `v1`.
///
/// 2: commands and results are typed messages (protocol 1 carried JSON payloads).
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest agent protocol the controller accepts; older agents are refused with
/// `SessionClosed { code: "agent_too_old" }`.
pub const MIN_AGENT_PROTOCOL_VERSION: u32 = 2;
