//! Ports for servers a test starts. They are picked below the kernel's ephemeral range
//! (`net.ipv4.ip_local_port_range`), so the port a test chose and released cannot be handed to
//! an outgoing connection or a `bind(0)` elsewhere before its server binds it, or while a server
//! restarts on it. Tests running in parallel pick at random, and a port is only returned after a
//! bind on it succeeded.

use std::hash::{BuildHasher, Hasher};
use std::net::{TcpListener, UdpSocket};

/// The lowest port this picks from: well clear of the registered services below it.
const LOWEST: u16 = 20_000;

/// A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range.
pub fn free_port() -> u16 {
    pick(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A UDP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range.
pub fn free_udp_port() -> u16 {
    pick(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

/// A TCP port free for both TCP and UDP (a DNS server listens on both).
pub fn free_tcp_and_udp_port() -> u16 {
    pick(|p| {
        TcpListener::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p)).is_ok()
    })
}

fn pick(free: impl Fn(u16) -> bool) -> u16 {
    let top = ephemeral_low().max(LOWEST + 1_000);
    let span = u64::from(top - LOWEST);
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0u64..10_000 {
        let mut h = random.build_hasher();
        h.write_u64(attempt);
        h.write_u32(std::process::id());
        let port = LOWEST + u16::try_from(h.finish() % span).expect("span fits in u16");
        if free(port) {
            return port;
        }
    }
    panic!("no free port between {LOWEST} and {top} on 127.0.0.1");
}

/// The first port of the ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_and_below_the_ephemeral_range() {
        let low = ephemeral_low();
        for _ in 0..20 {
            let p = free_port();
            assert!((LOWEST..low).contains(&p), "{p}");
            let u = free_udp_port();
            assert!((LOWEST..low).contains(&u), "{u}");
        }
    }
}
