//! A minimal HTTP/1 client for the CLI's calls to a running server.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Sends one request. `auth` is a full `Authorization` header value.
pub async fn call(
    method: Method,
    url: &str,
    auth: Option<&str>,
    body: Option<Vec<u8>>,
) -> anyhow::Result<Response> {
    let auth: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    call_with_headers(method, url, &auth, body).await
}

/// `call` with arbitrary request headers.
pub async fn call_with_headers(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> anyhow::Result<Response> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url).header(
        "user-agent",
        concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context("invalid request")?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .context("the server did not answer within 30s")?
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the response")?
        .to_bytes();
    Ok(Response { status, body })
}

/// Whether an error from `call` means nothing is listening.
pub fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    }) || e
        .chain()
        .any(|c| c.to_string().contains("onnection refused"))
}
