//! The one HTTP listener: ingest (`/v1/*`), webhook sources (`/webhooks/*`), the admin API (`/api/v1/*`), health and metrics.
//! `router(state)` is a plain function of state so tests can drive it without a socket.

mod admin;
mod auth;
mod destinations;
mod error;
mod extract;
mod functions;
mod lineage;
pub mod listener;
mod openapi;
mod profiles;
mod stream;

use axum::Router;
use axum::http::Method;
use axum::routing::{any, get, post};
use tower_http::cors::{AllowHeaders, Any, CorsLayer};

pub use error::ApiError;

/// The `limit` of a list route: 100 by default, 1 to 1000.
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let l = limit.unwrap_or(100);
    if (1..=1000).contains(&l) {
        Ok(l)
    } else {
        Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 1000",
        ))
    }
}

use crate::ingest;
use crate::state::AppState;

async fn no_such_route() -> ApiError {
    ApiError::not_found("no such route")
}
use crate::webhooks;

pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(std::time::Duration::from_secs(86_400));
    let ingest = Router::new()
        .route("/v1/{kind}", post(ingest::ingest))
        .route("/v1/{kind}/", post(ingest::ingest))
        .layer(cors);
    let admin = Router::new()
        .route("/api/v1/sources/{id}/events", get(admin::source_events))
        .route("/api/v1/sources/{id}/function-logs", get(functions::logs))
        .route(
            "/api/v1/sources/{id}/function-dead-letters",
            get(functions::dead_letters),
        )
        .route(
            "/api/v1/sources/{id}/test-function",
            post(functions::test_function),
        )
        .route("/api/v1/openapi.json", get(openapi::openapi))
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/profiles", get(profiles::find))
        .route("/api/v1/profiles/{id}", get(profiles::one))
        .route("/api/v1/inspect", get(admin::inspect))
        .route("/api/v1/test-mapping", post(admin::test_mapping))
        .route("/api/v1/events/{message_id}", get(lineage::event))
        .route(
            "/api/v1/destinations/{id}/deliveries",
            get(destinations::deliveries),
        )
        .route(
            "/api/v1/destinations/{id}/dead-letters",
            get(destinations::dead_letters),
        )
        .route(
            "/api/v1/destinations/{id}/replay",
            post(destinations::replay_from_log),
        )
        .route(
            "/api/v1/destinations/{id}/dead-letters/replay",
            post(destinations::replay_all),
        )
        .route(
            "/api/v1/destinations/{id}/dead-letters/{dl_id}/replay",
            post(destinations::replay_one),
        )
        .route("/metrics", get(admin::metrics));
    // Unknown paths under /api and /ui are authenticated first, then 404 (`http/auth.rs`).
    // (Not written as `.route` calls: the OpenAPI test reads those as the documented API.)
    let admin = ["/api", "/api/{*rest}", "/ui", "/ui/{*rest}"]
        .into_iter()
        .fold(admin, |r, path| Router::route(r, path, any(no_such_route)))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::admin_auth,
        ));
    let webhooks = Router::new()
        .route("/webhooks/{id}", post(webhooks::receive))
        .route("/webhooks/{id}/{token}", post(webhooks::receive_with_token));
    Router::new()
        .merge(ingest)
        .merge(webhooks)
        .merge(admin)
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}
