//! The accept loop: HTTP/1.1 with keep-alive, and limits on what one client can hold.
//!
//! - At most `max_connections` connections are served at once. Past that the loop stops
//!   accepting: new connections wait in the kernel's listen backlog until one closes, so a
//!   burst is delayed rather than refused (and a full backlog makes clients retry the SYN).
//! - A connection must deliver its request headers within `header_read_timeout`, counted
//!   from the accept or, on a keep-alive connection, from the first byte of the next request.
//! - A keep-alive connection with no request in progress is closed after `idle_timeout`.
//! - A request body must arrive within `body_read_timeout` of the server first waiting for
//!   it; otherwise the answer is 408 `request_timeout` and the connection closes.
//!
//! A request being handled (or its response being written) has no timeout here: ingest is
//! bounded by its own limits and `/api/v1/stream` is meant to stay open.
//!
//! Shutdown: when `stop` is cancelled the listener closes, idle connections close, and busy
//! ones close after their current response. The caller bounds the wait (dropping `serve`
//! aborts every connection still open).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

mod activity;

use activity::{Activity, RequestGuard, Watched, expired};

use super::ApiError;
use crate::config::ListenerLimits;

/// File descriptors kept for everything but client connections: log segments, the redb
/// stores, outbound HTTP, Postgres and NATS connections.
const FD_RESERVE: u64 = 512;

/// Serves `router` on `listener` until `stop` is cancelled and every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(connection_cap(limits.max_connections)));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = conns.join_next() => report(done),
            (stream, permit) = accept(&listener, &slots) => {
                let conn = connection(stream, router.clone(), limits, stop.clone());
                conns.spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    while let Some(done) = conns.join_next().await {
        report(done);
    }
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!(%error, "A connection task failed");
    }
}

/// Waits for a free slot, then for a connection. Accept errors other than a client giving up
/// (such as running out of file descriptors) are logged and retried after a second.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let Ok(permit) = slots.clone().acquire_owned().await else {
        // The semaphore is never closed.
        return std::future::pending().await;
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return (stream, permit),
            Err(e) if is_connection_error(&e) => {}
            Err(error) => {
                tracing::error!(%error, "Cannot accept a connection; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// `wanted`, unless the open-file limit cannot hold it plus `FD_RESERVE`: the soft limit is
/// raised toward the hard one first (as Go and nginx do), and if that is not enough the cap
/// is lowered so that clients can never take the descriptors the log needs.
fn connection_cap(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let need = wanted as u64 + FD_RESERVE;
    let mut limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return wanted; // unlimited
    };
    if current >= need {
        return wanted;
    }
    let raised = limit.maximum.map_or(need, |max| max.min(need));
    limit.current = Some(raised);
    let current = if raised > current && setrlimit(Resource::Nofile, limit).is_ok() {
        tracing::info!(
            limit = raised,
            "Raised the open-file limit for server.max_connections"
        );
        raised
    } else {
        current
    };
    if current >= need {
        return wanted;
    }
    let cap = current.saturating_sub(FD_RESERVE).max(current / 2).max(1);
    tracing::warn!(
        max_connections = wanted,
        serving = cap,
        open_file_limit = current,
        "The open-file limit is too low for server.max_connections; raise it (e.g. LimitNOFILE)"
    );
    usize::try_from(cap).unwrap_or(wanted)
}

/// Serves one connection until it ends, times out, or shuts down with the server.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ListenerLimits,
    stop: CancellationToken,
) {
    let (activity, mut changes) = watch::channel(Activity::new());
    let io = TokioIo::new(Watched {
        io: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn(move |req| {
        handle(router.clone(), req, limits.body_read_timeout, &activity)
    });
    // hyper's own header timer also runs while a keep-alive connection idles, which would cut
    // SDK connections at the header timeout; `expired` keeps the two timeouts apart.
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(error) = done {
                    tracing::debug!(%error, "Connection ended with an error");
                }
                return;
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            waited = expired(&mut changes, &limits) => {
                tracing::debug!(?waited, "Closing a connection that outstayed its timeout");
                return;
            }
        }
    }
}

/// Passes one request to the router with its body under the read deadline; the response
/// body carries the guard that marks the connection idle once it is written.
fn handle(
    mut router: Router,
    req: Request<Incoming>,
    body_timeout: Duration,
    activity: &watch::Sender<Activity>,
) -> impl Future<Output = Result<Response<Tracked>, Infallible>> + use<> {
    let guard = RequestGuard::new(activity.clone());
    async move {
        let tripped = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| DeadlineBody {
            inner: body,
            timeout: body_timeout,
            sleep: None,
            tripped: tripped.clone(),
        });
        let Ok(mut res) = tower_service::Service::call(&mut router, req).await;
        if tripped.load(Ordering::Relaxed) {
            res = body_timeout_response(body_timeout);
        }
        Ok(res.map(|inner| Tracked {
            inner,
            _guard: guard,
        }))
    }
}

fn body_timeout_response(timeout: Duration) -> axum::response::Response {
    let message = format!("the request body did not arrive within {timeout:?}");
    let mut res =
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message).into_response();
    res.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    res
}

/// The request body, failing once it has kept the server waiting for `timeout` in all.
/// The clock starts the first time the server waits on it.
struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    tripped: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.tripped.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.tripped.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's `RequestGuard` until hyper is done with it.
struct Tracked {
    inner: axum::body::Body,
    _guard: RequestGuard,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
