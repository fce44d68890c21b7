//! The `postgres` destination's `settings:` as written and compiled; the connection string
//! and CA file are checked here as `connect.rs` will read them.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::connect::{ConnectError, SslMode, Target, read_ca};
use crate::config::compile::Cx;
use crate::config::raw::Scalar;
use crate::config::{DestinationKind, Problem};

#[derive(Clone)]
pub struct PostgresSettings {
    /// A libpq-style URL or key=value string; may carry a password and `sslmode`.
    pub url: String,
    /// The CA that signed the server's certificate, PEM (`destinations/postgres/connect.rs`).
    pub ca_file: Option<std::path::PathBuf>,
    pub batch_rows: usize,
    pub batch_interval: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &crate::redact::url(&self.url))
            .field("ca_file", &self.ca_file)
            .field("batch_rows", &self.batch_rows)
            .field("batch_interval", &self.batch_interval)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgresSettings {
    url: String,
    /// PEM file of the CA that signed the server's certificate (libpq's `sslrootcert`).
    ca_file: Option<String>,
    batch_rows: Option<usize>,
    batch_interval: Option<Scalar>,
}

pub(crate) fn compile_postgres(
    cx: &mut Cx,
    v: Option<&Value>,
    path: &str,
) -> Option<DestinationKind> {
    let spath = format!("{path}.settings");
    let raw: RawPostgresSettings = cx.section(v, &spath)?;
    let ca_file = raw.ca_file.as_ref().map(std::path::PathBuf::from);
    check_postgres_tls(cx, &raw.url, ca_file.as_deref(), &spath);
    let batch_rows = raw.batch_rows.unwrap_or(10_000);
    if batch_rows == 0 {
        cx.err(format!("{spath}.batch_rows"), "must be at least 1");
    }
    let batch_interval = cx.duration(
        &raw.batch_interval,
        Duration::from_secs(1),
        &format!("{spath}.batch_interval"),
    );
    Some(DestinationKind::Postgres(PostgresSettings {
        url: raw.url,
        ca_file,
        batch_rows: batch_rows.max(1),
        batch_interval,
    }))
}

/// The connection string, its `sslmode` and the CA file, as the warehouse will read them:
/// every problem reported, the CA file read now (it is read again at each connection).
fn check_postgres_tls(cx: &mut Cx, url: &str, ca_file: Option<&std::path::Path>, spath: &str) {
    if let Some(Err(e)) = ca_file.map(read_ca) {
        cx.err(format!("{spath}.ca_file"), e.to_string());
    }
    let target = match Target::parse(url, ca_file) {
        Ok(t) => t,
        Err(e @ ConnectError::TwoCaFiles) => {
            return cx.err(format!("{spath}.ca_file"), e.to_string());
        }
        Err(e) => return cx.err(format!("{spath}.url"), e.to_string()),
    };
    if target.ca_file.is_some() && matches!(target.mode, SslMode::Disable | SslMode::Prefer) {
        let msg = format!(
            "the CA file is not used with sslmode={}: set sslmode=verify-full in the URL to check the server",
            target.mode.name()
        );
        // Point at where the CA was set: `settings.ca_file`, or `sslrootcert` in the URL.
        let at = if ca_file.is_some() { "ca_file" } else { "url" };
        cx.problems
            .push(Problem::warning(format!("{spath}.{at}"), msg));
    } else if ca_file.is_none()
        && let Err(e) = target.tls()
    {
        // sslrootcert in the URL.
        cx.err(format!("{spath}.url"), e.to_string());
    }
}
