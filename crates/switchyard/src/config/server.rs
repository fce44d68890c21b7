//! The `server:` section: the listen address, the admin token and egress.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::compile::Cx;
use super::raw::RawServer;
use super::{Problem, ServerConfig};

/// The shortest admin token accepted on a listener other than loopback.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

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
