//! What the admin API's requests and answers look like: the handlers take
//! and answer these, the CLI's client (`admin_client`) sends and reads
//! them, and the OpenAPI document is generated from them, so the three
//! cannot disagree.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::pipeline::ceilings::{CeilingOverrides, Ceilings, UploadQuota};
use crate::pipeline::registration::Registered;
use crate::pipeline::route::RouteLimits;
use crate::store::ceilings::UploadUsage;
use crate::store::oauth::WebhookRegistrationRow;
use crate::store::{DeadLetterRow, RouteChange, RouteRow};
use crate::support::vault::Secret;

/// Every error: a stable machine-readable `code` and a sentence for people.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

// ---- transforms ------------------------------------------------------------

/// A transform version a caller may route to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransformItem {
    /// What a route names: the digest, or `builtin:NAME`.
    pub reference: String,
    /// Lowercase hex sha256 of the component's bytes.
    pub digest: String,
    pub name: String,
    /// The component's size in bytes.
    pub size: i64,
    pub builtin: bool,
    /// The version of the transform contract it implements, e.g.
    /// `ionflux:transform@0.2.0`; null for a version stored without it.
    #[serde(default)]
    pub world: Option<String>,
    /// When it was uploaded (epoch ms); absent for built-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransformList {
    /// The built-ins first, then the stored versions the caller may see.
    pub transforms: Vec<TransformItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PushQuery {
    /// The transform's name, e.g. `vip-orders`.
    #[param(required = true)]
    pub name: Option<String>,
}

/// A stored version, as an upload answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushedTransform {
    pub reference: String,
    pub digest: String,
    pub name: String,
    /// The component's size in bytes.
    pub size: usize,
    /// The version of the transform contract it implements, e.g.
    /// `ionflux:transform@0.2.0`.
    #[serde(default)]
    pub world: Option<String>,
}

/// One version and the routes (that the caller may see) running it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransformDetail {
    #[serde(flatten)]
    pub transform: TransformItem,
    pub routes: Vec<RouteRow>,
    /// The workspaces that uploaded these bytes; shown to operators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_by_workspaces: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedTransform {
    /// The digest of the version deleted.
    pub deleted: String,
}

// ---- ceilings --------------------------------------------------------------

/// A workspace's ceilings, where they come from, and its uploads.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceCeilings {
    pub workspace_id: String,
    /// What applies: the defaults with the overrides over them.
    pub ceilings: Ceilings,
    /// What an operator set for this workspace.
    pub overrides: CeilingOverrides,
    /// The configured defaults.
    pub defaults: Ceilings,
    /// When an operator last set them (epoch ms); null if never.
    pub updated_at: Option<i64>,
    pub upload_quota: UploadQuota,
    pub uploads: UploadUsage,
}

// ---- routes ----------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteList {
    pub routes: Vec<RouteRow>,
}

/// Creates or replaces the route of a scope and topic pattern.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    /// The platform whose webhooks the route serves. Default: `shopify`.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Default: the token's own workspace; for an operator, none (a global
    /// or brand-only route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
    /// A topic or a glob: `orders/create`, `orders/*`, `*`.
    pub topic_pattern: String,
    /// A digest (or a unique prefix of 12+ hex digits) or `builtin:NAME`.
    pub transform: String,
    /// A JSON object handed to the transform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// Overrides of the default limits, within the workspace's ceilings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RouteLimits>)]
    pub limits: Option<serde_json::Value>,
    /// A candidate run beside the transform without publishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
}

/// Makes a route's shadow its transform.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// Default: `shopify`.
    #[serde(default = "default_provider")]
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<String>,
    pub topic_pattern: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many to return at most.
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteHistory {
    /// Newest first.
    pub history: Vec<RouteChange>,
}

// ---- dead letters ----------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterList {
    /// Unresolved, oldest first.
    pub dead_letters: Vec<DeadLetterRow>,
}

/// Either `ids` or `all: true`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<i64>>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// The dead letters queued again.
    pub replayed: Vec<i64>,
}

// ---- events ----------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this sequence number (default 0: from the start).
    #[serde(default)]
    pub after: i64,
    /// At most this many, 1-1000 (default 100).
    #[serde(default = "default_events_limit")]
    pub limit: i64,
    /// Instead of paging from `after`: the newest `limit` events.
    #[serde(default)]
    pub newest: bool,
}

fn default_events_limit() -> i64 {
    100
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventItem {
    pub seq: i64,
    pub topic: String,
    /// The PlatformEvent, byte for byte as published.
    #[schema(value_type = Object)]
    pub event: Box<RawValue>,
}

/// Oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<EventItem>,
    /// Pass as `after` to get the next page.
    pub next_after: i64,
}

// ---- dry run ---------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunBody {
    /// Default: what the routing table picks for the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    /// Default: the route's config (`{}` with an explicit transform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// Overrides of the default limits, as a route's `limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<RouteLimits>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DryRunTransform {
    pub reference: String,
    pub name: String,
    pub digest: String,
}

/// Why the transform produced no events (an answer, not an API error).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DryRunError {
    pub code: String,
    pub message: String,
}

/// `events` when the transform succeeded, `error` when it did not.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DryRunResult {
    pub inbox_id: i64,
    pub transform: DryRunTransform,
    /// The topic the events would go to.
    pub topic: String,
    /// The PlatformEvents it would publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub events: Option<Vec<Box<RawValue>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DryRunError>,
}

// ---- providers -------------------------------------------------------------

/// A platform this gateway takes webhooks from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderItem {
    /// The `provider` of connections and routes, and the URL segment of
    /// `/integrations/{provider}/webhooks/{id}`.
    pub id: String,
    /// What its webhooks run when no route names a transform.
    pub default_transform: String,
    /// How its connections are made, the usual way first: `secret`,
    /// `oauth`, `credentials`.
    pub set_up: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderItem>,
}

// ---- connections -----------------------------------------------------------

/// A connection as an operator sees it; its secrets and tokens never.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionItem {
    pub connection_id: String,
    /// The platform: `shopify`, `woocommerce`, `tiktok_shop`, …
    pub provider: String,
    /// The account it speaks for: shop domain, site URL, seller, sender.
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    pub secure_path_identifier: String,
    /// Where the platform sends this connection's webhooks.
    pub webhook_path: String,
    pub status: String,
    /// `manual` or `oauth`; null for a connection made before either.
    pub auth_method: Option<String>,
    /// Whether it holds the platform's API tokens.
    pub has_tokens: bool,
    /// Whether processing of its webhooks is paused (they are held).
    #[serde(default)]
    pub paused: bool,
    /// When intake last stored one of its webhooks (epoch ms).
    #[serde(default)]
    pub last_webhook_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionWebhooks {
    pub connection_id: String,
    pub account: String,
    /// One per topic, with how its subscription at the platform stands.
    pub registrations: Vec<WebhookRegistrationRow>,
}

/// Connects an account by hand with the secret its webhooks are signed
/// with. Sent again for the same account and brand, it rotates the secret
/// (the replaced one keeps verifying for the window), takes the new
/// settings and keeps the webhook URL.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddConnectionBody {
    /// The platform (`GET /admin/v1/providers` lists them). Default: `shopify`.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Shopify: `NAME.myshopify.com`; WooCommerce: the site's URL; TikTok
    /// Shop: the shop id; Wix: the app instance id; Standard Webhooks and
    /// HMAC senders: a name of your choice. `shop_domain` is taken too.
    #[serde(alias = "shop_domain")]
    pub account: String,
    /// A UUID. Default: the token's own workspace; an operator must give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// A UUID. A brand belongs to the workspace that connected it first.
    pub brand_id: String,
    /// The secret the webhooks are signed with (Wix: the app's public key,
    /// PEM; Standard Webhooks: `whsec_…`): stored encrypted, never answered
    /// or logged. Required unless `credentials` are given: the gateway then
    /// keeps the connection's current secret, or chooses one (32 random
    /// bytes, hex) for a new connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Password, write_only)]
    pub webhook_secret: Option<WebhookSecret>,
    /// The platform's API credentials, for the gateway to register the
    /// connection's webhooks there itself (WooCommerce: `{"consumer_key":
    /// "ck_…", "consumer_secret": "cs_…"}`). Write-only: never answered or
    /// logged; kept encrypted as the connection's API credential once a
    /// registration succeeded. Needs the gateway's `public_base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, write_only)]
    pub credentials: Option<Credentials>,
    /// The provider's settings: TikTok Shop `{"app_key": …}`; HMAC senders
    /// `{"preset": "github"}` or a declared scheme. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// When this rotates a secret: how long the replaced one keeps
    /// verifying, in seconds. Default: the gateway's
    /// `connections.previous_secret_window`; a workspace token may shorten
    /// it, not lengthen it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_window_secs: Option<u64>,
}

fn default_provider() -> String {
    "shopify".into()
}

/// A webhook secret in a request body. Debug shows `[redacted]`, and a
/// value that is not a string is refused without being quoted back.
#[derive(Debug, Clone)]
pub struct WebhookSecret(pub Secret);

impl Serialize for WebhookSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(self.0.expose()) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Err(serde::ser::Error::custom("the webhook secret is not UTF-8")),
        }
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde's own type errors quote the value they got.
        String::deserialize(d)
            .map(|s| WebhookSecret(Secret::from(s)))
            .map_err(|_| serde::de::Error::custom("webhook_secret must be a string"))
    }
}

/// API credentials in a request body. Debug shows `[redacted]`, and a
/// value that is not a JSON object is refused without being quoted back.
#[derive(Clone)]
pub struct Credentials(pub serde_json::Value);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Credentials {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Credentials {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d) {
            Ok(v @ serde_json::Value::Object(_)) => Ok(Credentials(v)),
            _ => Err(serde::de::Error::custom(
                "credentials must be a JSON object",
            )),
        }
    }
}

/// The connection as saved. Its secret is never part of an answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddedConnection {
    pub connection_id: String,
    pub secure_path_identifier: String,
    /// Where the platform must send this connection's webhooks.
    pub webhook_path: String,
    /// The same on this gateway's public base URL, when it knows it
    /// (`shopify.public_base_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    pub provider: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    /// False when the connection existed and its secret was rotated.
    pub created: bool,
    /// With `credentials`: the webhooks the platform now holds for this
    /// connection, one per topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registrations: Option<Vec<Registered>>,
}

// ---- shadow runs -----------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShadowQuery {
    /// Also the newest differing outputs (at most `limit`).
    #[serde(default)]
    pub samples: bool,
    /// How many samples at most, 1-1000 (default 100).
    pub limit: Option<i64>,
}

/// The counters of one (transform, shadow) pair, by digest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShadowCounters {
    pub primary_transform: String,
    pub shadow_transform: String,
    pub runs: i64,
    pub differences: i64,
    /// Epoch ms.
    pub updated_at: i64,
}

/// One webhook on which the shadow's output differed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShadowDifference {
    pub id: i64,
    pub primary_transform: String,
    pub shadow_transform: String,
    pub inbox_id: i64,
    pub topic: String,
    pub primary_output: String,
    pub shadow_output: String,
    /// Epoch ms.
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShadowReport {
    /// Most recently updated first.
    pub stats: Vec<ShadowCounters>,
    /// Newest first; empty unless asked for.
    pub samples: Vec<ShadowDifference>,
}

// ---- connection actions ----------------------------------------------------

/// One connection in full (`GET /admin/v1/connections/{id}`): how it stands,
/// never its secrets or tokens. Times are epoch ms.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    pub connection_id: String,
    pub provider: String,
    pub account: String,
    pub workspace_id: String,
    pub brand_id: String,
    /// `active`, `refresh_failed`, `disconnected` or `redacted`.
    pub status: String,
    /// Whether processing of its webhooks is paused (they are still taken
    /// and stored, and delivered on resume).
    pub paused: bool,
    pub paused_at: Option<i64>,
    pub paused_by: Option<String>,
    /// `manual` (by hand, a pasted secret or API credentials) or `oauth`.
    pub auth_method: Option<String>,
    /// The API scopes granted at the install; null for none.
    pub scopes: Option<String>,
    pub created_at: i64,
    pub installed_at: Option<i64>,
    pub installed_by: Option<String>,
    /// When intake last stored one of its webhooks.
    pub last_webhook_at: Option<i64>,
    /// The latest refresh or registration error, null when there is none.
    pub last_error: Option<String>,
    pub has_access_token: bool,
    /// Whether its token can be refreshed (`refresh` needs one).
    pub has_refresh_token: bool,
    /// When the access token expires; null: it does not (or there is none).
    pub access_token_expires_at: Option<i64>,
    pub refreshed_at: Option<i64>,
    pub refresh_failures: i64,
    pub secure_path_identifier: String,
    pub webhook_path: String,
    /// On this gateway's public base URL, when it knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The webhook registrations the gateway keeps for it, one per topic
    /// (empty when its webhooks are set up in the platform's dashboard or
    /// registered with API credentials in one go).
    pub registrations: Vec<WebhookRegistrationRow>,
}

/// What an action did. `changed` is false when the connection already was
/// so: every action is idempotent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionActionAnswer {
    pub connection_id: String,
    /// `disconnect`, `pause`, `resume`, `reregister` or `refresh`.
    pub action: String,
    pub changed: bool,
    /// A sentence on what happened.
    pub message: String,
    /// The connection afterwards.
    pub connection: ConnectionView,
    /// `reregister` with API credentials: the webhooks the platform now holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<Vec<Registered>>,
}
