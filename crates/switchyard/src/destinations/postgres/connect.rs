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
    #[error("{0} is given more than once in the connection string, with different values")]
    Repeated(&'static str),
    #[error(
        "{0} is not supported (client certificates, CRLs and key passwords are not); remove it from the connection string"
    )]
    Unsupported(String),
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
        let keys: Vec<&str> = ["sslmode", "sslrootcert"]
            .into_iter()
            .chain(UNSUPPORTED)
            .collect();
        let (rest, taken) = take_params(url, &keys);
        if let Some((k, _)) = taken
            .iter()
            .find(|(k, _)| UNSUPPORTED.contains(&k.as_str()))
        {
            return Err(ConnectError::Unsupported(k.clone()));
        }
        let mut config: tokio_postgres::Config = rest.parse().map_err(ConnectError::Url)?;
        let mode = match one(&taken, "sslmode")? {
            Some(v) => SslMode::parse(v)?,
            None => SslMode::Prefer,
        };
        // libpq 16's `sslrootcert=system`: the system's roots, as without a CA file.
        let root = one(&taken, "sslrootcert")?.filter(|v| *v != "system");
        let ca_file = match (root.map(PathBuf::from), ca_file) {
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

mod params;
use params::{UNSUPPORTED, one, take_params};

#[cfg(test)]
mod tests;
