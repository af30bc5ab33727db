//! `GET /admin/v1/routes/shadow`: how shadow candidates compare with the
//! transforms they run beside, as `routes shadow` shows it.
//!
//! The counters are kept per (transform, shadow) pair of digests, whoever's
//! webhooks ran them, so a workspace token sees the counters of pairs whose
//! shadow is a version its workspace uploaded (content-addressed: bytes
//! uploaded by two workspaces share counters), and only the differing
//! outputs of its own webhooks.

use std::collections::HashSet;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};

use super::body::{ErrorBody, ShadowCounters, ShadowDifference, ShadowQuery, ShadowReport};
use super::{Principal, query, store_error};
use crate::api::http::{ApiError, AppState};

/// How many samples are read to find a workspace's own: the table keeps at
/// most 50 per pair, so this covers twenty.
const SAMPLE_SCAN: i64 = 1_000;

/// Shadow run counters, and with `samples=true` the newest differing
/// outputs (a workspace's own).
#[utoipa::path(
    get,
    path = "/admin/v1/routes/shadow",
    tag = "routes",
    params(ShadowQuery),
    responses(
        (status = 200, body = ShadowReport),
        (status = 400, description = "`bad_request`", body = ErrorBody),
    ),
)]
pub(super) async fn shadow_runs(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<ShadowQuery>, QueryRejection>,
) -> Result<Json<ShadowReport>, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = &state.store;
    let mut stats: Vec<ShadowCounters> = store
        .shadow_stats()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|s| ShadowCounters {
            primary_transform: s.primary_transform,
            shadow_transform: s.shadow_transform,
            runs: s.runs,
            differences: s.differences,
            updated_at: s.updated_at,
        })
        .collect();
    if let Some(ws) = principal.workspace() {
        let own: HashSet<String> = store
            .workspace_transforms(ws)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|t| t.digest)
            .collect();
        stats.retain(|s| own.contains(&s.shadow_transform));
    }
    let mut samples = Vec::new();
    if q.samples {
        let scan = match principal.workspace() {
            None => limit,
            Some(_) => SAMPLE_SCAN,
        };
        for s in store.shadow_samples(scan).await.map_err(store_error)? {
            if samples.len() as i64 >= limit {
                break;
            }
            if let Some(ws) = principal.workspace() {
                let row = store.inbox_row(s.inbox_id).await.map_err(store_error)?;
                if row.is_none_or(|r| r.workspace_id != ws) {
                    continue;
                }
            }
            samples.push(ShadowDifference {
                id: s.id,
                primary_transform: s.primary_transform,
                shadow_transform: s.shadow_transform,
                inbox_id: s.inbox_id,
                topic: s.topic,
                primary_output: s.primary_output,
                shadow_output: s.shadow_output,
                created_at: s.created_at,
            });
        }
    }
    Ok(Json(ShadowReport { stats, samples }))
}
