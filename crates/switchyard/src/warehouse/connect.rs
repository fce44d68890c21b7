//! Connecting to the warehouse, with TLS as libpq's `sslmode` says (rustls, ring).
//!
//! | `sslmode`         | TLS                           | certificate checked                     |
//! |-------------------|-------------------------------|-----------------------------------------|
//! | `disable`         | never                         | —                                       |
//! | `prefer` (default)| if the server offers it       | no                                      |
//! | `require`         | always                        | no; with a CA file, as `verify-ca`      |
//! | `verify-ca`       | always                        | signed by the CA                        |
//! | `verify-full`     | always                        | signed by the CA, for the host name     |
//!
//! The CA is `settings.ca_file` (or `sslrootcert` in the URL), PEM; without one, `verify-ca`
//! and `verify-full` trust the system's roots. `sslmode` and `sslrootcert` are taken out of
//! the connection string here; the rest is tokio-postgres's (URL or key=value).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Client;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::isolate::describe;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, ConnectError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(ConnectError::SslMode(other.to_owned())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("sslmode {0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error("not a Postgres connection string: {0}")]
    Url(tokio_postgres::Error),
    #[error("sslrootcert in the URL and settings.ca_file name different files; set one")]
    TwoCaFiles,
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("connecting to Postgres (sslmode={mode}{ca}) failed: {reason}")]
    Connect {
        mode: &'static str,
        ca: String,
        reason: String,
    },
}

/// Where and how to connect: tokio-postgres's config, the TLS mode and the CA file.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub ca_file: Option<PathBuf>,
}

impl Target {
    /// Reads `url` (a libpq URL or key=value string) and the CA file setting.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<Target, ConnectError> {
        let (rest, taken) = take_params(url, &["sslmode", "sslrootcert"]);
        let mut config: tokio_postgres::Config = rest.parse().map_err(ConnectError::Url)?;
        let mode = match taken.iter().rev().find(|(k, _)| k == "sslmode") {
            Some((_, v)) => SslMode::parse(v)?,
            None => SslMode::Prefer,
        };
        let root = taken.iter().rev().find(|(k, _)| k == "sslrootcert");
        let ca_file = match (root.map(|(_, v)| PathBuf::from(v)), ca_file) {
            (Some(a), Some(b)) if a != b => return Err(ConnectError::TwoCaFiles),
            (a, b) => a.or_else(|| b.map(Path::to_path_buf)),
        };
        config.ssl_mode(match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        Ok(Target {
            config,
            mode,
            ca_file,
        })
    }

    /// The rustls configuration for this mode; reads the CA file.
    pub fn tls(&self) -> Result<ClientConfig, ConnectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.ca_error(e.to_string()))?;
        let verify_name = match (self.mode, &self.ca_file) {
            (SslMode::VerifyFull, _) => true,
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => false,
            _ => {
                let any = AnyCertificate(provider.signature_verification_algorithms);
                let mut c = builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(any))
                    .with_no_client_auth();
                c.alpn_protocols = vec![b"postgresql".to_vec()];
                return Ok(c);
            }
        };
        let roots = Arc::new(self.roots()?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| self.ca_error(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = if verify_name {
            webpki
        } else {
            Arc::new(AnyName(webpki))
        };
        let mut c = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        c.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(c)
    }

    fn ca_error(&self, reason: String) -> ConnectError {
        let path = self.ca_file.clone().unwrap_or_default();
        ConnectError::CaFile { path, reason }
    }

    /// The CA file's certificates, or the system's roots without one.
    fn roots(&self) -> Result<RootCertStore, ConnectError> {
        match &self.ca_file {
            Some(path) => read_ca(path),
            None => {
                let mut roots = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                Ok(roots)
            }
        }
    }

    /// Connects, and runs the connection on its own task (ending with `id`'s warning).
    pub async fn connect(&self, id: &str) -> Result<Client, ConnectError> {
        let tls = MakeRustlsConnect::new(self.tls()?);
        let (client, connection) = self.config.connect(tls).await.map_err(|e| {
            let ca = match (&self.ca_file, self.mode) {
                (_, SslMode::Disable | SslMode::Prefer) => String::new(),
                (Some(p), _) => format!(", CA file {}", p.display()),
                (None, _) => ", the system's CAs".to_owned(),
            };
            ConnectError::Connect {
                mode: self.mode.name(),
                ca,
                reason: describe(&e),
            }
        })?;
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(destination = %id, error = %e, "Postgres connection closed");
            }
        });
        Ok(client)
    }
}

/// The certificates of a PEM CA file.
pub fn read_ca(path: &Path) -> Result<RootCertStore, ConnectError> {
    let fail = |reason: String| ConnectError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("it holds no PEM certificate".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| fail(format!("a certificate is not usable: {e}")))?;
    }
    Ok(roots)
}

/// `require` and `prefer` without a CA: any certificate (the handshake's signatures are
/// still checked), as libpq.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA; the name is not checked (webpki checks the
/// chain first, so a name error means the chain was good).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Takes the parameters named `keys` out of a libpq connection string (URL query or
/// key=value), returning the rest and the taken `(key, value)` pairs, values decoded.
fn take_params(s: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let prefix = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|p| s.starts_with(p));
    match prefix {
        Some(p) => take_from_url(s, p.len(), keys),
        None => take_from_pairs(s, keys),
    }
}

fn take_from_url(s: &str, after_scheme: usize, keys: &[&str]) -> (String, Vec<(String, String)>) {
    // As tokio-postgres reads it: credentials end at the first `@`, the query starts at the
    // first `?` after them.
    let rest = &s[after_scheme..];
    let from = after_scheme + rest.find('@').map_or(0, |i| i + 1);
    let Some(q) = s[from..].find('?').map(|i| from + i) else {
        return (s.to_owned(), Vec::new());
    };
    let decode = |x: &str| {
        percent_encoding::percent_decode_str(x)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (mut kept, mut taken) = (Vec::new(), Vec::new());
    for pair in s[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if keys.contains(&decode(k).as_str()) {
            taken.push((decode(k), decode(v)));
        } else {
            kept.push(pair);
        }
    }
    let mut out = s[..q].to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    (out, taken)
}

/// key=value form: `key = value` pairs separated by spaces; a value may be quoted with `'`,
/// and `\` escapes the next character.
fn take_from_pairs(s: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let b = s.as_bytes();
    let (mut out, mut taken) = (String::new(), Vec::new());
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let key_start = skip_space(b, i);
        let mut j = key_start;
        while j < b.len() && b[j] != b'=' && !b[j].is_ascii_whitespace() {
            j += 1;
        }
        let key = &s[key_start..j];
        j = skip_space(b, j);
        if j >= b.len() || b[j] != b'=' {
            // Not a pair tokio-postgres would accept: leave the rest for it to refuse.
            out.push_str(&s[start..]);
            break;
        }
        let (value, end) = read_value(s, skip_space(b, j + 1));
        if keys.contains(&key) {
            taken.push((key.to_owned(), value));
        } else {
            out.push_str(&s[start..end]);
        }
        i = end;
    }
    (out.trim().to_owned(), taken)
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// A value from `i`: quoted or bare; returns it unescaped and where it ends.
fn read_value(s: &str, i: usize) -> (String, usize) {
    let quoted = s[i..].starts_with('\'');
    let mut value = String::new();
    let mut chars = s[i..].char_indices().skip(usize::from(quoted));
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            '\'' if quoted => return (value, i + at + 1),
            c if c.is_whitespace() && !quoted => return (value, i + at),
            c => value.push(c),
        }
    }
    (value, s.len())
}

#[cfg(test)]
mod tests;
