//! A real HTTP receiver for delivery tests: records every request, answers with a status
//! the test controls, or hangs (a black hole) until the client gives up; or, with
//! `respond`, answers each request as a function of it and of what came before (a delay,
//! headers such as `Retry-After` or `Location`).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// How to answer one request: after `delay`, with `status` and `headers`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// Picks the reply to a request, given it and everything received so far (it included).
type Respond = Arc<dyn Fn(&Received, &[Received]) -> Reply + Send + Sync>;

/// Status 0 means "never answer".
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    respond: Arc<Mutex<Option<Respond>>>,
}

async fn handle(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let status = r.status.load(Ordering::SeqCst);
    let this = Received {
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
    };
    let respond = r.respond.lock().unwrap().clone();
    let reply = {
        let mut got = r.got.lock().unwrap();
        got.push(this.clone());
        respond.map(|f| f(&this, &got))
    };
    if let Some(reply) = reply {
        tokio::time::sleep(reply.delay).await;
        let mut resp = StatusCode::from_u16(reply.status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
        for (k, v) in reply.headers {
            resp.headers_mut().insert(k, v.parse().unwrap());
        }
        return resp;
    }
    if status == 0 {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let r = Receiver {
            url: format!("http://127.0.0.1:{port}"),
            port,
            got: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            respond: Arc::default(),
        };
        let app = Router::new().fallback(handle).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Answers every later request with what `f` picks (instead of `answer`'s status).
    pub fn respond(&self, f: impl Fn(&Received, &[Received]) -> Reply + Send + Sync + 'static) {
        *self.respond.lock().unwrap() = Some(Arc::new(f));
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for what was received (15 s at most).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {} requests",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
