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

/// `ids`, `all: true`, or filters (`reason`, `since`, `until`) alone; the
/// filters narrow `ids` and `all` too.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<i64>>,
    #[serde(default)]
    pub all: bool,
    /// Only letters of this `reason_code` (trap, invalid_output, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Only letters dead-lettered at or after this: RFC 3339, or epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only letters dead-lettered before this: RFC 3339, or epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// How many to return at most (default 1000, at most 10000).
    pub limit: Option<i64>,
    /// Only letters of this `reason_code` (trap, invalid_output, …).
    pub reason: Option<String>,
    /// Dead-lettered at or after: RFC 3339, or epoch ms.
    pub after: Option<String>,
    /// Dead-lettered before: RFC 3339, or epoch ms.
    pub before: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// The dead letters queued again.
    pub replayed: Vec<i64>,
}

// ---- webhooks --------------------------------------------------------------

/// `GET /admin/v1/webhooks`: every filter given must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhooksQuery {
    /// One connection's webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// One platform's (shopify, woocommerce, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The platform's topic, exactly (orders/create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// pending, published or dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Received at or after: RFC 3339, or epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Received before: RFC 3339, or epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The platform's delivery id: Shopify's `X-Shopify-Webhook-Id`,
    /// WooCommerce's `X-WC-Webhook-Delivery-ID`, Standard Webhooks'
    /// `webhook-id`, GitHub's `X-GitHub-Delivery`, … (what deduplicates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// At most this many, 1-1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`: the page after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A stored webhook: what it is and where it stands (never its body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookItem {
    /// The inbox id (`webhooks show ID`, the dry run's).
    pub id: i64,
    pub provider: String,
    pub connection_id: String,
    pub workspace_id: String,
    pub brand_id: String,
    /// The connected account (a shop domain, a site URL, …).
    pub account: String,
    pub topic: String,
    /// The platform's delivery id.
    pub delivery_id: String,
    /// pending, published or dead.
    pub status: String,
    /// Attempts so far (a replay keeps counting).
    pub attempts: i64,
    /// Epoch ms.
    pub received_at: i64,
    /// The intake's trace (OTLP trace id).
    pub trace_id: String,
}

/// Newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookPage {
    pub webhooks: Vec<WebhookItem>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhookShowQuery {
    /// Also the stored body, as received (decompressed).
    #[serde(default)]
    pub body: bool,
}

/// A header intake kept (signatures are never kept).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeaderItem {
    pub name: String,
    pub value: String,
}

/// How the webhook arrived. It was verified: intake stores nothing else.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookReceived {
    /// Epoch ms.
    pub at: i64,
    pub trace_id: String,
    pub headers: Vec<HeaderItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// When the platform says the event happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// The platform's own event id, when it sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_event_id: Option<String>,
}

/// One attempt the dispatcher recorded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttempt {
    pub attempt: i64,
    /// Epoch ms: when its outcome was recorded.
    pub at: i64,
    /// published, dead (dead-lettered) or retry (the sink failed for now).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Cut to 1 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The route that chose the transform; absent: the platform's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_id: Option<i64>,
    /// The transform's name (or the reference that did not load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_digest: Option<String>,
}

/// A record the webhook produced, and where it went: the event log's
/// sequence number (partition 0), or Kafka's partition and offset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookRecord {
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The webhook's dead letter, unresolved or resolved by a replay.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeadLetter {
    /// The dead letter's id (`dead-letters replay --id`).
    pub id: i64,
    pub reason_code: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_digest: Option<String>,
    /// Epoch ms.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_at: Option<i64>,
    /// A replay that succeeded; the webhook is published since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    /// Its record on the dead-letter topic, when the sink has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<WebhookRecord>,
}

/// One webhook's life: received, each attempt, the events it became or
/// its dead letter.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDetail {
    pub webhook: WebhookItem,
    pub received: WebhookReceived,
    /// Oldest first. Attempts recorded before the gateway kept them (an
    /// older version) are counted in `webhook.attempts` only.
    pub attempts: Vec<WebhookAttempt>,
    /// Pending: when it is due (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// The latest transient failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Epoch ms: published or dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// Published: its events, with their ids (the same on every retry).
    pub events: Vec<WebhookRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<WebhookDeadLetter>,
    /// With `?body=true`: the body as received, as text when it is UTF-8,
    /// else base64 (`body_encoding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `utf-8` or `base64`, with `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<String>,
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
