//! The clock of one connection: what it waits for (the next request's headers, or nothing
//! on an idle keep-alive connection) and since when. The socket notes the first byte of a
//! request; the router call and the end of its response mark the rest.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ListenerLimits;

/// What a connection is waiting for, and since when.
#[derive(Debug, Clone, Copy)]
pub(super) struct Activity {
    /// Requests handed to the router whose response is not yet written.
    in_flight: u32,
    /// With nothing in flight: the next request's headers, or nothing at all.
    waiting: Waiting,
    since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    Headers,
    Idle,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            in_flight: 0,
            waiting: Waiting::Headers,
            since: Instant::now(),
        }
    }

    fn deadline(&self, limits: &ListenerLimits) -> Option<Instant> {
        let timeout = match (self.in_flight, self.waiting) {
            (0, Waiting::Headers) => limits.header_read_timeout,
            (0, Waiting::Idle) => limits.idle_timeout,
            _ => return None,
        };
        self.since.checked_add(timeout)
    }
}

/// Resolves when the connection has waited past its deadline, with what it waited for.
pub(super) async fn expired(
    changes: &mut watch::Receiver<Activity>,
    limits: &ListenerLimits,
) -> Waiting {
    loop {
        let state = *changes.borrow_and_update();
        let Some(deadline) = state.deadline(limits) else {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            continue;
        };
        tokio::select! {
            biased;
            changed = changes.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            () = tokio::time::sleep_until(deadline) => return state.waiting,
        }
    }
}

/// Counts a request from the router call until its response body is written (or dropped).
pub(super) struct RequestGuard(watch::Sender<Activity>);

impl RequestGuard {
    pub(super) fn new(activity: watch::Sender<Activity>) -> RequestGuard {
        activity.send_modify(|a| a.in_flight += 1);
        RequestGuard(activity)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            if a.in_flight == 0 {
                a.waiting = Waiting::Idle;
                a.since = Instant::now();
            }
        });
    }
}

/// The socket, noting the first byte of each request that arrives on an idle connection.
pub(super) struct Watched {
    pub(super) io: TcpStream,
    pub(super) activity: watch::Sender<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.send_if_modified(|a| {
                let idle = a.in_flight == 0 && a.waiting == Waiting::Idle;
                if idle {
                    a.waiting = Waiting::Headers;
                    a.since = Instant::now();
                }
                idle
            });
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
