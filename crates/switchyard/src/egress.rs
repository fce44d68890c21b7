//! The SSRF guard for HTTP(S) egress (docs/security.md#egress): webhook and segment destinations,
//! and `fetch` in functions. The check runs on the resolved address at connect time, inside the
//! connector, so DNS rebinding cannot slip past it. Redirects are never followed and proxy
//! environment variables are never read (hyper's client does neither). An IPv6 address that reaches
//! an IPv4 one is judged as that IPv4 address; `literal.rs` also reads URL hosts spelled as numbers
//! (`0x7f000001`), for `check`'s warning on literal URLs.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

mod literal;

pub use literal::literal_host_ip;

/// One `server.egress_allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    Cidr(IpAddr, u8),
    HostPort(String, u16),
}

impl AllowRule {
    /// Parses `10.0.0.0/8`, `fd00::/8`, `127.0.0.1:9000`, `[::1]:9000` or `hooks.internal:8080`.
    pub fn parse(s: &str) -> Result<AllowRule, String> {
        if let Some((ip, bits)) = s.split_once('/') {
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("{s:?}: invalid CIDR address"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: invalid prefix length"))?;
            return Ok(AllowRule::Cidr(ip, bits));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected a CIDR or host:port"))?;
        let port: u16 = port.parse().map_err(|_| format!("{s:?}: invalid port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("{s:?}: empty host"));
        }
        Ok(AllowRule::HostPort(host, port))
    }

    fn allows(&self, host: &str, ip: IpAddr, port: u16) -> bool {
        match self {
            AllowRule::Cidr(net, bits) => in_cidr(ip, *net, *bits),
            AllowRule::HostPort(h, p) => {
                *p == port
                    && (h.eq_ignore_ascii_case(host)
                        || h.parse::<IpAddr>()
                            .is_ok_and(|a| canonical(a) == canonical(ip)))
            }
        }
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (canonical(ip), canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            bits == 0 || (u32::from(a) ^ u32::from(n)) >> (32 - u32::from(bits.min(32))) == 0
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            bits == 0 || (u128::from(a) ^ u128::from(n)) >> (128 - u32::from(bits.min(128))) == 0
        }
        _ => false,
    }
}

/// IPv6 addresses that reach an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are
/// judged as that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => literal::embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is refused by default, or `None` if it is public.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "a cloud metadata address",
        (127, _) => "a loopback address",
        (10, _) | (192, 168) => "a private address",
        (172, 16..=31) => "a private address",
        (100, 64..=127) => "a shared (CGNAT) address",
        (169, 254) => "a link-local address",
        (0, _) => "an unspecified address",
        _ if ip.is_broadcast() || ip.is_multicast() => "a broadcast or multicast address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        _ if ip
            == "fd00:ec2::254"
                .parse::<Ipv6Addr>()
                .unwrap_or(Ipv6Addr::UNSPECIFIED) =>
        {
            "a cloud metadata address"
        }
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "an unspecified address",
        // Local-use NAT64 (RFC 8215): a private translator, its IPv4 placement unknown.
        _ if ip.segments()[..3] == [0x64, 0xff9b, 1] => "a local-use NAT64 address",
        _ if first & 0xfe00 == 0xfc00 => "a private (unique local) address",
        _ if first & 0xffc0 == 0xfe80 => "a link-local address",
        _ if ip.is_multicast() => "a multicast address",
        _ => return None,
    })
}

/// The egress rules of one process.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    pub allow_private_networks: bool,
    pub allow: Vec<AllowRule>,
}

impl EgressPolicy {
    /// `Ok` if a connection to `ip:port` (named `host` in the URL) may be made.
    pub fn check(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), String> {
        if self.allow.iter().any(|r| r.allows(host, ip, port)) {
            return Ok(());
        }
        match forbidden_reason(ip) {
            Some(why) if !self.allow_private_networks => Err(format!(
                "egress to {host} ({ip}) refused: it is {why}; set server.allow_private_networks or add it to server.egress_allow"
            )),
            _ => Ok(()),
        }
    }
}

/// Marks a refused connection, so delivery can classify it as permanent.
#[derive(Debug)]
pub struct EgressDenied(pub String);

impl std::fmt::Display for EgressDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EgressDenied {}

/// Finds an `EgressDenied` anywhere in an error's source chain.
pub fn denied_reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<EgressDenied>() {
            return Some(d.0.clone());
        }
        // `io::Error::source` skips the error it wraps, so look inside it explicitly.
        if let Some(d) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<EgressDenied>())
        {
            return Some(d.0.clone());
        }
        cur = err.source();
    }
    None
}

/// A TCP connector that resolves, checks every address against the policy, and connects
/// only to an allowed one.
#[derive(Clone)]
pub struct GuardedConnector {
    pub policy: Arc<EgressPolicy>,
    pub connect_timeout: Duration,
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (policy, timeout) = (self.policy.clone(), self.connect_timeout);
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other("the URL has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect();
            let mut refused = None;
            let mut last_err = None;
            for addr in addrs {
                if let Err(why) = policy.check(&host, addr.ip(), port) {
                    refused = Some(why);
                    continue;
                }
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(e)) => last_err = Some(e),
                    Err(_) => {
                        last_err = Some(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "connect timed out",
                        ))
                    }
                }
            }
            match (last_err, refused) {
                (Some(e), _) => Err(e),
                (None, Some(why)) => Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    EgressDenied(why),
                )),
                (None, None) => Err(std::io::Error::other(format!(
                    "{host} did not resolve to any address"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests;
