//! TikTok Shop's token endpoint for the shared refresher
//! ([`crate::providers::refresh`]): `GET /api/v2/token/refresh` (see
//! `auth`), whose expiries are absolute unix seconds. TikTok's own refusal
//! (its envelope's non-zero `code`: a spent or revoked refresh token, wrong
//! app credentials) and a 400, 401 or 403 only a reconnect mends; the
//! network, 429 and 5xx are retried.

use std::sync::Arc;
use std::time::Duration;

use super::auth::{TikTokAuth, TikTokAuthError};
use crate::providers::refresh::{
    RefreshCall, RefreshConfig, Refreshed, Refresher, Refusal, TokenEndpoint,
};
use crate::store::Store;
use crate::support::vault::{Secret, Vault};

struct TikTokTokens {
    auth: TikTokAuth,
}

/// What TikTok's refusal or failure is, without anything secret: the
/// envelope's code and message are TikTok's words about our request, never
/// its tokens.
fn refusal(e: &TikTokAuthError) -> Refusal {
    let permanent = match e {
        TikTokAuthError::Api { .. } => true,
        TikTokAuthError::Status { status } => matches!(status, 400 | 401 | 403),
        _ => false,
    };
    Refusal {
        reason: e.to_string(),
        permanent,
    }
}

impl TokenEndpoint for TikTokTokens {
    fn refresh<'a>(&'a self, _shop: &'a str, refresh_token: &'a Secret) -> RefreshCall<'a> {
        Box::pin(async move {
            let t = self
                .auth
                .refresh(refresh_token)
                .await
                .map_err(|e| refusal(&e))?;
            Ok(Refreshed {
                access_token: t.access_token,
                access_token_expires_at: Some(t.access_token_expires_at.timestamp_millis()),
                refresh_token: Some(t.refresh_token),
                refresh_token_expires_at: Some(t.refresh_token_expires_at.timestamp_millis()),
                scopes: t.granted_scopes.join(","),
            })
        })
    }
}

/// The refresher of this app's TikTok Shop connections.
pub fn refresher(
    store: Store,
    vault: Arc<Vault>,
    auth: TikTokAuth,
    cfg: RefreshConfig,
    http_timeout: Duration,
) -> Refresher {
    Refresher::new(
        store,
        vault,
        super::install::ID,
        Arc::new(TikTokTokens { auth }),
        cfg,
        http_timeout,
    )
}
