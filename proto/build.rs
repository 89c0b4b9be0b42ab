//! Compiles `proto/*.proto` with protox, so building needs no `protoc` on the machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["mpanel/agent/v1/agent.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The RPC is named `Connect`; the generated `connect` constructor would clash with it.
        // Clients build their own mTLS channel anyway and call `AgentServiceClient::new`.
        .build_transport(false)
        // Smaller per-RPC buffers: a session is one RPC held open for the agent's lifetime.
        .codec_path("crate::codec::SessionCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
