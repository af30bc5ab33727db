//! `POST /admin/v1/connections`: an account of any registered platform
//! connected by hand over the API, as `connections add` does on the
//! database's host, so the CLI needs no database URL and no master key for
//! it. The secret is taken in the body, encrypted by the gateway's vault,
//! and never answered or logged.
//!
//! Given the platform's API `credentials`, the gateway also registers the
//! connection's webhooks there ([`crate::pipeline::registration`]), choosing
//! the secret when none is given. A failed registration keeps the
//! connection: asking again is idempotent and picks up where it stopped.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use uuid::Uuid;

use super::body::{AddConnectionBody, AddedConnection, ErrorBody};
use super::{Principal, bad_request, forbidden, internal, json_body, store_error};
use crate::api::http::{ApiError, AppState};
use crate::pipeline::connection::{self, ConnectionError, NewConnection};
use crate::pipeline::provider::Proposed;
use crate::pipeline::registration::{self, RegisterError, Registration, RegistrationError};
use crate::support::vault::Secret;

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
        (status = 400, description = "`bad_request`: not the body, an unknown provider, an account, settings, secret or credentials the provider refuses, an invalid id, an empty or missing secret, credentials for a platform the gateway does not register at or without a public base URL; `registration_refused`: the platform refused the credentials or the registration (the connection is saved)", body = ErrorBody),
        (status = 502, description = "`registration_failed`: the platform could not be reached or failed during the registration (the connection is saved; the same request again retries)", body = ErrorBody),
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
    // With credentials, the provider must be one the gateway registers at,
    // and the address it would register must be known: refused before
    // anything is saved.
    let registering = match &body.credentials {
        None => None,
        Some(credentials) => {
            let registrar = provider.registrar().ok_or_else(|| {
                bad_request(format!(
                    "{}'s webhooks are set up in its own dashboard: connect it with \
                     webhook_secret and no credentials",
                    provider.id()
                ))
            })?;
            let base = state.public_base_url.as_deref().ok_or_else(|| {
                bad_request(
                    "registering webhooks needs the gateway's public address: set \
                     shopify.public_base_url (IONFLUX_PUBLIC_BASE_URL)",
                )
            })?;
            Some((registrar, &credentials.0, base))
        }
    };
    // The account as it is stored, to find an existing connection of it.
    // Without a secret yet (one the gateway will choose), a placeholder
    // stands in: what is checked here is the account and settings.
    let placeholder = Secret::from("-".to_string());
    let given = body.webhook_secret.as_ref().map(|s| &s.0);
    let checked = provider
        .check_connection(&Proposed {
            account: &body.account,
            settings: &settings,
            secret: given.unwrap_or(&placeholder).expose(),
        })
        .map_err(bad_request)?;
    // As for the OAuth install: nothing keyed by brand alone (shop details)
    // may reach another tenant's shop.
    if let Some(owner) = state.store.brand_owner(&brand).await.map_err(store_error)?
        && !same_uuid(&owner, &workspace)
    {
        return Err(forbidden("this brand belongs to another workspace"));
    }
    let existing = state
        .store
        .connection_for_shop(provider.id(), &checked.account, &brand)
        .await
        .map_err(store_error)?;
    if let Some(existing) = &existing
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
    let secret = match (given, &registering) {
        (Some(secret), _) => secret.clone(),
        (None, Some(_)) => registration::secret_for(&state.vault, existing.as_ref())
            .map_err(|e| internal(e.to_string()))?,
        (None, None) => {
            return Err(bad_request(
                "webhook_secret is required (or credentials, for the gateway to register \
                 the webhooks and choose the secret)",
            ));
        }
    };
    if let Some((registrar, credentials, _)) = &registering {
        registrar.check(credentials, &secret).map_err(bad_request)?;
    }
    let new = NewConnection {
        account: &body.account,
        workspace: &workspace,
        brand: &brand,
        secret: &secret,
        settings: &settings,
        previous_window: window,
    };
    let created = connection::add(&state.store, &state.vault, provider.as_ref(), &new)
        .await
        .map_err(connection_error)?;
    tracing::info!(connection = %created.connection_id, provider = %created.provider,
        account = %created.account,
        workspace = %created.workspace_id, brand = %created.brand_id, created = created.created,
        actor = principal.actor(), "connection added over the admin API");
    let registrations = match registering {
        None => None,
        Some((registrar, credentials, base)) => {
            let address = registration::address(base, &created.webhook_path);
            let req = Registration {
                account: &created.account,
                settings: &settings,
                secret: &secret,
                address: &address,
                credentials,
                options: state.provider_options.get(provider.id()),
            };
            let done = registration::register_connection(
                &state.store,
                &state.vault,
                registrar,
                &created.connection_id,
                req,
            )
            .await;
            match done {
                Ok(registered) => Some(registered),
                Err(RegisterError::Registration(e)) => {
                    return Err(registration_failed(&created.connection_id, e));
                }
                Err(RegisterError::Connection(e)) => return Err(connection_error(e)),
            }
        }
    };
    // 200 either way, as every answer of this API: `created` tells.
    Ok(Json(AddedConnection {
        webhook_url: state
            .public_base_url
            .as_deref()
            .map(|base| registration::address(base, &created.webhook_path)),
        connection_id: created.connection_id,
        secure_path_identifier: created.secure_path_identifier,
        webhook_path: created.webhook_path,
        provider: created.provider,
        account: created.account,
        workspace_id: created.workspace_id,
        brand_id: created.brand_id,
        created: created.created,
        registrations,
    }))
}

fn connection_error(e: ConnectionError) -> ApiError {
    match e {
        ConnectionError::Invalid(_)
        | ConnectionError::InvalidId(_)
        | ConnectionError::EmptySecret => bad_request(e.to_string()),
        ConnectionError::Store(e) => store_error(e),
        ConnectionError::Vault(e) => internal(e.to_string()),
    }
}

/// A registration that failed after the connection was saved: the
/// connection stays (sending the same request again reuses its secret and
/// picks up the registration where it stopped), and the answer says so.
fn registration_failed(connection_id: &str, e: RegistrationError) -> ApiError {
    let kept = format!(
        "the connection {connection_id} is saved; send the same request again to retry \
         the registration"
    );
    match e {
        RegistrationError::Refused(why) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "registration_refused",
            format!("{why} ({kept})"),
        ),
        RegistrationError::Unavailable(why) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "registration_failed",
            format!("{why} ({kept})"),
        ),
    }
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
