//! The outbound HTTP client: keep-alive, TLS (rustls, system roots), the egress guard at
//! connect time, no redirects, no proxies, a per-request timeout, and at most 1 KiB of each
//! response kept for the delivery log.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::egress::{EgressPolicy, GuardedConnector, denied_reason};

/// What is read of a response body at most (the rest is dropped with the connection).
const MAX_RESPONSE_READ: usize = 64 << 10;
const KEEP_RESPONSE: usize = 1024;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body_prefix: String,
    pub retry_after: Option<String>,
    /// Where a redirect pointed (it is never followed).
    pub location: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SendError {
    Timeout,
    Egress(String),
    Network(String),
    /// The request could not be built (bad URL or header): permanent.
    Invalid(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Timeout => f.write_str("timed out"),
            SendError::Egress(m) | SendError::Network(m) | SendError::Invalid(m) => f.write_str(m),
        }
    }
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
}

impl HttpClient {
    pub fn new(policy: EgressPolicy) -> std::io::Result<HttpClient> {
        let tcp = GuardedConnector {
            policy: Arc::new(policy),
            connect_timeout: Duration::from_secs(10),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(HttpClient { client })
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, SendError> {
        let resp = self
            .exchange(method, url, headers, body, timeout, MAX_RESPONSE_READ, true)
            .await?;
        let cut = resp.body.len().min(KEEP_RESPONSE);
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Ok(Response {
            status: resp.status,
            body_prefix: String::from_utf8_lossy(&resp.body[..cut]).into_owned(),
            retry_after: header("retry-after"),
            location: header("location"),
        })
    }

    /// One request with the whole response (at most `max_body` bytes, else an error):
    /// `fetch` in source functions.
    pub async fn fetch(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
        max_body: usize,
    ) -> Result<FullResponse, SendError> {
        self.exchange(method, url, headers, body, timeout, max_body, false)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
        max_body: usize,
        truncate: bool,
    ) -> Result<FullResponse, SendError> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| SendError::Invalid(format!("invalid request: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| classify_error(&e))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let body = match Limited::new(resp.into_body(), max_body).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) if truncate => Bytes::new(),
                Err(e) => {
                    return Err(SendError::Network(format!(
                        "reading the response failed (limit {max_body} bytes): {e}"
                    )));
                }
            };
            Ok(FullResponse {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(SendError::Timeout))
    }
}

/// A whole response, for `fetch`.
#[derive(Debug, Clone)]
pub struct FullResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

fn classify_error(e: &hyper_util::client::legacy::Error) -> SendError {
    if let Some(reason) = denied_reason(e) {
        return SendError::Egress(reason);
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    SendError::Network(msg)
}
