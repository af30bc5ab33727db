//! `POST /admin/v1/connections`: an account of any registered platform
//! connected by hand over the API, as `connections add` does on the
//! database's host, so the CLI needs no database URL and no master key for
//! it. The secret is taken in the body, encrypted by the gateway's vault,
//! and never answered or logged.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use uuid::Uuid;

use super::body::{AddConnectionBody, AddedConnection, ErrorBody};
use super::{Principal, bad_request, forbidden, internal, json_body, store_error};
use crate::api::http::{ApiError, AppState};
use crate::pipeline::connection::{self, ConnectionError, NewConnection};
use crate::pipeline::provider::Proposed;

/// Connects an account by hand (or, for an account and brand already
/// connected, rotates its webhook secret). An operator names the workspace; a
/// workspace token adds to its own only.
#[utoipa::path(
    post,
    path = "/admin/v1/connections",
    tag = "connections",
    request_body = AddConnectionBody,
    responses(
        (status = 200, description = "Connected (`created`), or already connected and its secret rotated", body = AddedConnection),
        (status = 400, description = "`bad_request`: not the body, an unknown provider, an account, settings or secret the provider refuses, an invalid id, an empty secret", body = ErrorBody),
        (status = 403, description = "`forbidden`: another workspace, a brand or connection of another workspace, or a workspace's window longer than the gateway's", body = ErrorBody),
    ),
)]
pub(super) async fn add_connection(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<AddConnectionBody>, JsonRejection>,
) -> Result<Json<AddedConnection>, ApiError> {
    let body = json_body(body)?;
    let workspace = match (principal.workspace(), body.workspace_id.as_deref()) {
        (None, None | Some("")) => {
            return Err(bad_request(
                "workspace_id is required with an operator token",
            ));
        }
        (None, Some(ws)) => uuid("workspace_id", ws)?,
        (Some(own), None | Some("")) => own.to_string(),
        (Some(own), Some(ws)) => {
            let ws = uuid("workspace_id", ws)?;
            if ws != uuid("workspace_id", own)? {
                return Err(forbidden(
                    "a connection of another workspace needs that workspace's token",
                ));
            }
            ws
        }
    };
    let provider = state
        .providers
        .get(&body.provider)
        .ok_or_else(|| bad_request(format!("no provider is called {:?}", body.provider)))?
        .clone();
    let brand = uuid("brand_id", &body.brand_id)?;
    let settings = body.settings.clone().unwrap_or_default();
    // The account as it is stored, to find an existing connection of it.
    let checked = provider
        .check_connection(&Proposed {
            account: &body.account,
            settings: &settings,
            secret: body.webhook_secret.0.expose(),
        })
        .map_err(bad_request)?;
    // As for the OAuth install: nothing keyed by brand alone (shop details)
    // may reach another tenant's shop.
    if let Some(owner) = state.store.brand_owner(&brand).await.map_err(store_error)?
        && !same_uuid(&owner, &workspace)
    {
        return Err(forbidden("this brand belongs to another workspace"));
    }
    if let Some(existing) = state
        .store
        .connection_for_shop(provider.id(), &checked.account, &brand)
        .await
        .map_err(store_error)?
        && !same_uuid(&existing.workspace_id, &workspace)
    {
        return Err(forbidden(
            "this account and brand are another workspace's connection",
        ));
    }
    let window = match body.previous_secret_window_secs.map(Duration::from_secs) {
        None => state.previous_secret_window,
        Some(w) if principal.workspace().is_some() && w > state.previous_secret_window => {
            return Err(forbidden(format!(
                "previous_secret_window_secs may be at most {} for a workspace token",
                state.previous_secret_window.as_secs()
            )));
        }
        Some(w) => w,
    };
    let new = NewConnection {
        account: &body.account,
        workspace: &workspace,
        brand: &brand,
        secret: &body.webhook_secret.0,
        settings: &settings,
        previous_window: window,
    };
    let created = connection::add(&state.store, &state.vault, provider.as_ref(), &new)
        .await
        .map_err(|e| match e {
            ConnectionError::Invalid(_)
            | ConnectionError::InvalidId(_)
            | ConnectionError::EmptySecret => bad_request(e.to_string()),
            ConnectionError::Store(e) => store_error(e),
            ConnectionError::Vault(e) => internal(e.to_string()),
        })?;
    tracing::info!(connection = %created.connection_id, provider = %created.provider,
        account = %created.account,
        workspace = %created.workspace_id, brand = %created.brand_id, created = created.created,
        actor = principal.actor(), "connection added over the admin API");
    // 200 either way, as every answer of this API: `created` tells.
    Ok(Json(AddedConnection {
        webhook_url: state
            .public_base_url
            .as_deref()
            .map(|base| format!("{}{}", base.trim_end_matches('/'), created.webhook_path)),
        connection_id: created.connection_id,
        secure_path_identifier: created.secure_path_identifier,
        webhook_path: created.webhook_path,
        provider: created.provider,
        account: created.account,
        workspace_id: created.workspace_id,
        brand_id: created.brand_id,
        created: created.created,
    }))
}

/// The canonical form of a UUID, as connections are stored.
fn uuid(what: &str, value: &str) -> Result<String, ApiError> {
    Uuid::parse_str(value.trim())
        .map(|u| u.to_string())
        .map_err(|_| bad_request(format!("{what} must be a UUID")))
}

fn same_uuid(a: &str, b: &str) -> bool {
    match (Uuid::parse_str(a), Uuid::parse_str(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
