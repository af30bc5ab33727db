//! "Where is my webhook?": `GET /admin/v1/webhooks` finds stored webhooks
//! by connection, platform, topic, status, time and the platform's delivery
//! id, newest first in pages (a cursor, never an offset);
//! `GET /admin/v1/webhooks/{inbox_id}` tells one webhook's life. A
//! workspace token sees its own workspace's only. The local CLI
//! (`webhooks list`, `webhooks show` without `--admin-url`) answers through
//! [`list`] and [`show`] too, so both print the same.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};

use super::body::{
    ErrorBody, HeaderItem, WebhookAttempt, WebhookDeadLetter, WebhookDetail, WebhookItem,
    WebhookPage, WebhookReceived, WebhookRecord, WebhookShowQuery, WebhooksQuery,
};
use super::{Principal, bad_request, forbidden, not_found, path, query, store_error};
use crate::api::http::{ApiError, AppState};
use crate::pipeline::event::{DEAD_LETTER_INDEX, event_id_of};
use crate::store::{Store, WebhookFilter, WebhookSummary};

/// The most webhooks one page holds.
const MAX_PAGE: i64 = 1000;

/// Stored webhooks, newest first (a workspace's own).
#[utoipa::path(
    get,
    path = "/admin/v1/webhooks",
    tag = "webhooks",
    params(WebhooksQuery),
    responses(
        (status = 200, body = WebhookPage),
        (status = 400, description = "`bad_request`: an unknown status, a time that is neither RFC 3339 nor epoch ms, a cursor this API did not give", body = ErrorBody),
    ),
)]
pub(super) async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
    q: Result<Query<WebhooksQuery>, QueryRejection>,
) -> Result<Json<WebhookPage>, ApiError> {
    let q = query(q)?;
    list(&state.store, principal.workspace(), &q)
        .await
        .map(Json)
}

/// One stored webhook's life: how it was received, each attempt (route and
/// transform, error), the events it became or its dead letter; its body
/// with `?body=true`.
#[utoipa::path(
    get,
    path = "/admin/v1/webhooks/{inbox_id}",
    tag = "webhooks",
    params(("inbox_id" = i64, Path, description = "A stored webhook"), WebhookShowQuery),
    responses(
        (status = 200, body = WebhookDetail),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another workspace's webhook", body = ErrorBody),
        (status = 404, description = "`unknown_webhook`", body = ErrorBody),
    ),
)]
pub(super) async fn show_webhook(
    State(state): State<AppState>,
    principal: Principal,
    inbox_id: Result<Path<i64>, PathRejection>,
    q: Result<Query<WebhookShowQuery>, QueryRejection>,
) -> Result<Json<WebhookDetail>, ApiError> {
    let inbox_id = path(inbox_id)?;
    let q = query(q)?;
    show(&state.store, principal.workspace(), inbox_id, q.body)
        .await
        .map(Json)
}

/// A page of stored webhooks matching `q`, of `workspace` (None: all).
pub async fn list(
    store: &Store,
    workspace: Option<&str>,
    q: &WebhooksQuery,
) -> Result<WebhookPage, ApiError> {
    if let Some(status) = q.status.as_deref()
        && !["pending", "published", "dead"].contains(&status)
    {
        return Err(bad_request(format!(
            "status {status:?} is none of pending, published, dead"
        )));
    }
    let before_id = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| bad_request("cursor: not one this API gave"))?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let filter = WebhookFilter {
        workspace_id: workspace.map(str::to_owned),
        connection_id: nonempty(&q.connection_id),
        provider: nonempty(&q.provider),
        topic: nonempty(&q.topic),
        status: nonempty(&q.status),
        received_after: instant("after", q.after.as_deref())?,
        received_before: instant("before", q.before.as_deref())?,
        delivery_id: nonempty(&q.delivery_id),
        before_id,
        // One more than asked: whether a next page exists, without a page
        // that turns out empty.
        limit: limit + 1,
    };
    let mut rows = store.find_webhooks(&filter).await.map_err(store_error)?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(WebhookPage {
        webhooks: rows.into_iter().map(item).collect(),
        next_cursor,
    })
}

/// One stored webhook's life, when `workspace` (None: any) may see it.
pub async fn show(
    store: &Store,
    workspace: Option<&str>,
    inbox_id: i64,
    with_body: bool,
) -> Result<WebhookDetail, ApiError> {
    let unknown = || not_found("unknown_webhook", format!("no stored webhook {inbox_id}"));
    // Scoped before the body is read: another workspace's is not even
    // decompressed.
    let Some(head) = store
        .stored_webhook(inbox_id, false)
        .await
        .map_err(store_error)?
    else {
        return Err(unknown());
    };
    if workspace.is_some_and(|own| own != head.summary.workspace_id) {
        return Err(forbidden("this webhook belongs to another workspace"));
    }
    let w = if with_body {
        store
            .stored_webhook(inbox_id, true)
            .await
            .map_err(store_error)?
            .ok_or_else(unknown)?
    } else {
        head
    };
    let attempts = store
        .webhook_attempts(inbox_id)
        .await
        .map_err(store_error)?;
    let letter = store.dead_letter_of(inbox_id).await.map_err(store_error)?;
    let s = &w.summary;
    let record = |index: usize, d: &crate::store::Delivery| WebhookRecord {
        event_id: event_id_of(&s.connection_id, &s.webhook_id, s.received_at, index).to_string(),
        topic: d.topic.clone(),
        partition: d.partition,
        offset: d.offset,
    };
    // The ids are the dispatcher's (`event::event_id`): a function of the
    // row and the record's index, so they need not be stored.
    let (events, letter_record) = match s.status.as_str() {
        "published" => (
            w.deliveries
                .iter()
                .enumerate()
                .map(|(i, d)| record(i, d))
                .collect(),
            None,
        ),
        "dead" => (
            Vec::new(),
            w.deliveries.first().map(|d| record(DEAD_LETTER_INDEX, d)),
        ),
        _ => (Vec::new(), None),
    };
    let (body, body_encoding) = match &w.body {
        None => (None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Some(text.to_owned()), Some("utf-8".to_owned())),
            Err(_) => {
                use base64::Engine as _;
                (
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    Some("base64".to_owned()),
                )
            }
        },
    };
    Ok(WebhookDetail {
        received: WebhookReceived {
            at: s.received_at,
            trace_id: s.trace_id.clone(),
            headers: w
                .headers
                .iter()
                .map(|(name, value)| HeaderItem {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            api_version: w.api_version.clone(),
            occurred_at: w.occurred_at.clone(),
            platform_event_id: w.event_id.clone(),
        },
        attempts: attempts
            .into_iter()
            .map(|a| WebhookAttempt {
                attempt: a.attempt,
                at: a.at,
                outcome: a.outcome,
                reason_code: a.reason_code,
                error: a.error,
                route_id: a.route_id,
                transform: a.transform,
                transform_digest: a.transform_digest,
            })
            .collect(),
        next_attempt_at: (s.status == "pending").then_some(w.next_attempt_at),
        last_error: w.last_error.clone(),
        finished_at: w.finished_at,
        events,
        dead_letter: letter.map(|l| WebhookDeadLetter {
            id: l.id,
            reason_code: l.reason_code,
            reason: l.reason,
            transform: l.transform,
            transform_digest: l.transform_digest,
            created_at: l.created_at,
            replayed_at: l.replayed_at,
            resolved_at: l.resolved_at,
            record: letter_record,
        }),
        body,
        body_encoding,
        webhook: item(w.summary),
    })
}

fn item(s: WebhookSummary) -> WebhookItem {
    WebhookItem {
        id: s.id,
        provider: s.provider,
        connection_id: s.connection_id,
        workspace_id: s.workspace_id,
        brand_id: s.brand_id,
        account: s.account,
        topic: s.topic,
        delivery_id: s.webhook_id,
        status: s.status,
        attempts: s.attempts,
        received_at: s.received_at,
        trace_id: s.trace_id,
    }
}

/// A time given as RFC 3339 or as epoch milliseconds, in epoch ms; the
/// parameter's name for the error.
pub(super) fn instant(name: &str, given: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(given) = given.map(str::trim).filter(|g| !g.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ms) = given.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(given)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| {
            bad_request(format!(
                "{name}: {given:?} is neither RFC 3339 (2026-12-01T00:00:00Z) nor epoch ms"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::instant;

    #[test]
    fn times_are_rfc_3339_or_epoch_milliseconds() {
        assert_eq!(instant("after", None).unwrap(), None);
        assert_eq!(instant("after", Some(" ")).unwrap(), None);
        assert_eq!(
            instant("after", Some("1764547200000")).unwrap(),
            Some(1_764_547_200_000)
        );
        assert_eq!(
            instant("after", Some("2025-12-01T00:00:00Z")).unwrap(),
            Some(1_764_547_200_000)
        );
        assert_eq!(
            instant("after", Some("2025-12-01T01:00:00+01:00")).unwrap(),
            Some(1_764_547_200_000)
        );
        let err = instant("before", Some("yesterday")).unwrap_err();
        assert_eq!(err.code, "bad_request");
        assert!(err.message.starts_with("before:"), "{}", err.message);
    }
}
