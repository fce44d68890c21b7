//! The `server:` section: the listen address, the admin token, egress, and the connection
//! limits of the HTTP listener.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::compile::Cx;
use super::raw::RawServer;
use super::{ListenerLimits, Problem, ServerConfig};

/// The shortest admin token accepted on a listener other than loopback.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// Bounds of each listener timeout: below it every client would be cut off, above it the
/// timeout no longer protects anything.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Well under `tokio::sync::Semaphore::MAX_PERMITS` and any real file-descriptor limit.
const MAX_CONNECTIONS: usize = 1_000_000;

/// Why `token` may not guard a listener on `listen`, if it may not: a listener other than
/// loopback needs a token of at least 16 characters. Also used for `serve --listen`.
pub fn public_admin_token_problem(listen: SocketAddr, token: Option<&str>) -> Option<String> {
    if listen.ip().is_loopback() {
        return None;
    }
    match token {
        None => Some(format!(
            "listen is {listen}, which is not a loopback address; set admin_token so the admin API, UI and metrics are not open to the network"
        )),
        Some(t) if t.chars().count() < MIN_ADMIN_TOKEN_CHARS => Some(format!(
            "must be at least {MIN_ADMIN_TOKEN_CHARS} characters when listen ({listen}) is not a loopback address: a short token can be guessed (e.g. openssl rand -hex 32)"
        )),
        Some(_) => None,
    }
}

pub(super) fn compile(cx: &mut Cx, v: Option<&Value>) -> ServerConfig {
    let raw: RawServer = cx.section(v, "server").unwrap_or_default();
    let listen = match raw.listen.as_deref() {
        None => SocketAddr::from((Ipv4Addr::LOCALHOST, 8088)),
        Some(text) => parse_listen(text).unwrap_or_else(|| {
            cx.err(
                "server.listen",
                format!("invalid address {text:?}: expected host:port, e.g. 127.0.0.1:8088"),
            );
            SocketAddr::from((Ipv4Addr::LOCALHOST, 8088))
        }),
    };
    let admin_token = raw.admin_token.clone().filter(|t| !t.is_empty());
    check_admin_token(cx, listen, admin_token.as_deref());
    let server = ServerConfig {
        listen,
        data_dir: PathBuf::from(raw.data_dir.clone().unwrap_or_else(|| "./data".into())),
        admin_token,
        allow_private_networks: raw.allow_private_networks.unwrap_or(false),
        egress_allow: egress_rules(cx, raw.egress_allow.clone().unwrap_or_default()),
        shutdown_timeout: cx.duration(
            &raw.shutdown_timeout,
            Duration::from_secs(10),
            "server.shutdown_timeout",
        ),
        recent_events: raw.recent_events.unwrap_or(1000),
        min_free_disk: cx.size(&raw.min_free_disk, 1 << 30, "server.min_free_disk"),
        limits: limits(cx, &raw),
        bench_no_store: false,
    };
    if server.recent_events == 0 || server.recent_events > 100_000 {
        cx.err("server.recent_events", "must be between 1 and 100000");
    }
    server
}

fn check_admin_token(cx: &mut Cx, listen: SocketAddr, token: Option<&str>) {
    if let Some(message) = public_admin_token_problem(listen, token) {
        cx.err("server.admin_token", message);
    } else if token.is_some_and(|t| t.chars().count() < MIN_ADMIN_TOKEN_CHARS) {
        cx.problems.push(Problem::warning(
            "server.admin_token",
            format!(
                "shorter than {MIN_ADMIN_TOKEN_CHARS} characters: fine on loopback, refused on any other listen address"
            ),
        ));
    }
}

/// The listener's timeouts and connection cap, each checked against its bounds.
fn limits(cx: &mut Cx, raw: &RawServer) -> ListenerLimits {
    let mut timeout = |v, default, key: &str| {
        let path = format!("server.{key}");
        let d = cx.duration(v, default, &path);
        if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) {
            d
        } else {
            cx.err(path, "must be between 100ms and 1h");
            default
        }
    };
    let limits = ListenerLimits {
        header_read_timeout: timeout(
            &raw.header_read_timeout,
            Duration::from_secs(10),
            "header_read_timeout",
        ),
        body_read_timeout: timeout(
            &raw.body_read_timeout,
            Duration::from_secs(30),
            "body_read_timeout",
        ),
        idle_timeout: timeout(&raw.idle_timeout, Duration::from_secs(75), "idle_timeout"),
        max_connections: raw.max_connections.unwrap_or(10_000),
    };
    if !(1..=MAX_CONNECTIONS).contains(&limits.max_connections) {
        cx.err(
            "server.max_connections",
            format!("must be between 1 and {MAX_CONNECTIONS}"),
        );
    }
    limits
}

fn egress_rules(cx: &mut Cx, entries: Vec<String>) -> Vec<crate::egress::AllowRule> {
    let mut rules = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match crate::egress::AllowRule::parse(e) {
            Ok(r) => rules.push(r),
            Err(msg) => cx.err(format!("server.egress_allow[{i}]"), msg),
        }
    }
    rules
}

fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(a) = text.parse() {
        return Some(a);
    }
    let port: u16 = text.strip_prefix("localhost:")?.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}
