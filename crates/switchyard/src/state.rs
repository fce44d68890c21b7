//! `AppState`: the one state struct every handler and task shares.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::store::DeliveryStore;
use crate::destinations::DestinationStatus;
use crate::http::ApiError;
use crate::ingest::Admission;
use crate::log::{Log, Recovery};
use crate::profiles::ProfileStore;
use crate::recent::RecentStore;
use crate::telemetry::Metrics;
use crate::webhooks::Webhooks;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Ready = 1,
    Draining = 2,
}

pub struct Inner {
    pub config: Config,
    pub log: Log,
    pub recovery: Recovery,
    pub recent: RecentStore,
    pub metrics: Arc<Metrics>,
    pub admission: Admission,
    pub destinations: Vec<Arc<DestinationStatus>>,
    pub store: Arc<DeliveryStore>,
    pub clock: Arc<dyn Clock>,
    pub webhooks: Webhooks,
    pub profiles: Arc<ProfileStore>,
    phase: AtomicU8,
}

/// What `AppState::new` is built from (everything but the admission control and phase).
pub struct Parts {
    pub config: Config,
    pub log: Log,
    pub recovery: Recovery,
    pub recent: RecentStore,
    pub metrics: Arc<Metrics>,
    pub destinations: Vec<Arc<DestinationStatus>>,
    pub store: Arc<DeliveryStore>,
    pub clock: Arc<dyn Clock>,
    pub webhooks: Webhooks,
    pub profiles: Arc<ProfileStore>,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(p: Parts) -> AppState {
        let admission = Admission::new(&p.config, p.clock.now_ms());
        AppState(Arc::new(Inner {
            config: p.config,
            log: p.log,
            recovery: p.recovery,
            recent: p.recent,
            metrics: p.metrics,
            admission,
            destinations: p.destinations,
            store: p.store,
            clock: p.clock,
            webhooks: p.webhooks,
            profiles: p.profiles,
            phase: AtomicU8::new(Phase::Starting as u8),
        }))
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
        if p == Phase::Draining {
            self.recent.close();
        }
    }

    /// Ingest answers 503 while starting or draining.
    pub fn check_accepting(&self) -> Result<(), ApiError> {
        match self.phase() {
            Phase::Ready => Ok(()),
            Phase::Starting => Err(ApiError::unavailable(
                "starting",
                "the server is starting; retry shortly",
            )),
            Phase::Draining => {
                self.metrics
                    .throttled
                    .get_or_create(&crate::telemetry::metrics::reason("draining"))
                    .inc();
                Err(ApiError::unavailable(
                    "draining",
                    "the server is shutting down; retry shortly",
                ))
            }
        }
    }
}
