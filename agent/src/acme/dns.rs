//! The "is this name pointing here yet?" check made before any ACME order, so a customer whose
//! DNS still points elsewhere costs no order, no failed validation and no rate limit.
//!
//! With no resolver configured the system resolver answers; with `[acme] dns_resolver` (tests
//! point it at pebble-challtestsrv) one A or AAAA question goes to that server over UDP. The
//! message building and parsing are plain functions; only [`addresses`] does I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// The addresses of `name` in the family of `family` (A for IPv4, AAAA for IPv6). A name that
/// does not exist resolves to nothing; only a resolver that cannot be asked is an error.
pub(super) async fn addresses(
    resolver: Option<SocketAddr>,
    name: &str,
    family: IpAddr,
) -> Result<Vec<IpAddr>, String> {
    match resolver {
        None => {
            // NXDOMAIN and "no address" look the same here: not pointing here yet.
            let Ok(found) = tokio::net::lookup_host((name, 0)).await else {
                return Ok(Vec::new());
            };
            Ok(found
                .map(|a| a.ip())
                .filter(|ip| ip.is_ipv4() == family.is_ipv4())
                .collect())
        }
        Some(server) => ask(server, name, family).await,
    }
}

async fn ask(server: SocketAddr, name: &str, family: IpAddr) -> Result<Vec<IpAddr>, String> {
    let qtype = if family.is_ipv4() { TYPE_A } else { TYPE_AAAA };
    let mut id = [0u8; 2];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| "no randomness for the DNS id".to_owned())?;
    let id = u16::from_be_bytes(id);
    let query = build_query(id, name, qtype)?;
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("DNS socket: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("DNS resolver {server}: {e}"))?;
    socket
        .send(&query)
        .await
        .map_err(|e| format!("DNS resolver {server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| format!("DNS resolver {server} did not answer"))?
            .map_err(|e| format!("DNS resolver {server}: {e}"))?;
        // Anything that is not the answer to our question (stray or spoofed) is ignored.
        if let Some(answer) = parse_answer(&buf[..n], id, qtype) {
            return answer;
        }
    }
}

/// A recursive query for one name and type.
pub(super) fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))
            .ok_or_else(|| format!("'{name}' is not a DNS name"))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// `None` when `msg` is not a response to query `id`; otherwise the addresses of type `qtype`
/// among the answers (NXDOMAIN and empty answers give none), or the resolver's failure.
pub(super) fn parse_answer(msg: &[u8], id: u16, qtype: u16) -> Option<Result<Vec<IpAddr>, String>> {
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?])) };
    if u16_at(0)? != id || msg.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = msg.get(3)? & 0x0f;
    match rcode {
        0 | 3 => {}
        other => return Some(Err(format!("the DNS resolver answered rcode {other}"))),
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    let mut found = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let (rtype, rdlen) = (u16_at(at)?, usize::from(u16_at(at + 8)?));
        let data = msg.get(at + 10..at + 10 + rdlen)?;
        match (rtype, qtype) {
            (TYPE_A, TYPE_A) if rdlen == 4 => {
                found.push(IpAddr::from(<[u8; 4]>::try_from(data).ok()?));
            }
            (TYPE_AAAA, TYPE_AAAA) if rdlen == 16 => {
                found.push(IpAddr::from(<[u8; 16]>::try_from(data).ok()?));
            }
            // CNAMEs the resolver followed, and anything else: their targets come as records.
            _ => {}
        }
        at += 10 + rdlen;
    }
    Some(Ok(found))
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_names_the_labels_and_asks_for_recursion() {
        let q = build_query(0x1234, "www.shop.example.", TYPE_A).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..17], b"\x03www\x04");
        assert_eq!(&q[q.len() - 4..], &[0, 1, 0, 1]);
        assert!(build_query(1, "a..b", TYPE_A).is_err());
    }

    #[test]
    fn answers_yield_addresses_of_the_asked_type_only() {
        let mut msg = build_query(7, "shop.example", TYPE_A).unwrap();
        msg[2] = 0x81;
        msg[3] = 0x80;
        msg[7] = 2; // two answers: a CNAME, then an A
        msg.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
        let found = parse_answer(&msg, 7, TYPE_A).unwrap().unwrap();
        assert_eq!(found, vec!["192.0.2.7".parse::<IpAddr>().unwrap()]);
        assert!(
            parse_answer(&msg, 8, TYPE_A).is_none(),
            "another query's answer"
        );
        msg[3] = 0x82; // SERVFAIL
        assert!(parse_answer(&msg, 7, TYPE_A).unwrap().is_err());
        msg[3] = 0x83; // NXDOMAIN, no answers
        msg[7] = 0;
        assert!(parse_answer(&msg, 7, TYPE_A).unwrap().unwrap().is_empty());
    }
}
