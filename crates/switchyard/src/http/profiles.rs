//! `GET /api/v1/profiles/{id}` (a user id or anonymous id) and
//! `GET /api/v1/profiles?trait.<name>=<value>`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;

use super::extract::{Path, Query};
use serde_json::{Value, json};

use super::ApiError;
use crate::state::AppState;

fn enabled(state: &AppState) -> Result<(), ApiError> {
    if state.config.storage.profiles {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "the profile store is off; set storage.profiles: true to keep profiles",
        ))
    }
}

pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    enabled(&state)?;
    let store = state.profiles.clone();
    let found = tokio::task::spawn_blocking(move || store.get(&id).map(|p| (id, p)))
        .await
        .map_err(|e| ApiError::internal("profile_lookup_failed", e))?
        .map_err(|e| ApiError::internal("storage_error", e))?;
    match found {
        (_, Some(p)) => Ok(Json(serde_json::to_value(p).unwrap_or(Value::Null))),
        (id, None) => Err(ApiError::not_found(format!("no profile for {id:?}"))),
    }
}

pub async fn find(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    enabled(&state)?;
    let mut traits = q
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("trait.")?.to_owned(), v.clone())));
    let Some((name, value)) = traits.next() else {
        return Err(ApiError::bad_request(
            "missing_trait",
            "look profiles up by one trait: /api/v1/profiles?trait.email=ada@example.com",
        ));
    };
    let limit = super::page_limit(q.get("limit").and_then(|l| l.parse().ok()))?;
    let store = state.profiles.clone();
    let found = tokio::task::spawn_blocking(move || store.find_by_trait(&name, &value, limit))
        .await
        .map_err(|e| ApiError::internal("profile_lookup_failed", e))?
        .map_err(|e| ApiError::internal("storage_error", e))?;
    Ok(Json(json!({ "profiles": found })))
}
