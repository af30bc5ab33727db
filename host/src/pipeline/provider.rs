//! What a platform must say for the pipeline to take its webhooks.
//!
//! The pipeline owns this contract and `providers/*` implement it, so the
//! pipeline never imports a provider: intake asks the provider named in the
//! path (`/integrations/{provider}/webhooks/{identifier}`) to verify and
//! describe the request, and stores what it describes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::Value;

use crate::pipeline::registration::Registrar;
use crate::store::{InboxRow, Outcome, Store};

/// A request as received, before anything in it is trusted.
#[derive(Clone, Copy)]
pub struct Incoming<'a> {
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received: signatures are over these bytes.
    pub body: &'a [u8],
    /// Seconds since the Unix epoch at receipt (timestamp tolerances).
    pub now: i64,
}

/// What a connection holds to verify its webhooks.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    /// Decrypted secrets, the current one first, then any still inside
    /// their rotation window. A request verifies if any of them matches.
    pub secrets: &'a [&'a [u8]],
    /// The connection's non-secret settings (a TikTok app key, a
    /// configurable source's HMAC spec), `Value::Null` when it has none.
    pub settings: &'a Value,
}

/// What the pipeline stores of a genuine webhook. Every field comes from
/// the provider's own headers or envelope; the pipeline adds tenancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The platform's name for what happened (`orders/create`,
    /// `order.updated`, `1`→`order_status_change`): routes match on it.
    pub topic: String,
    /// The platform's delivery id, the deduplication key; a provider with
    /// none derives a stable one from the signed bytes.
    pub delivery_id: String,
    /// The account the webhook speaks for (shop domain, site, seller),
    /// when the request says: it must be the connection's own.
    pub account: Option<String>,
    /// The platform's API version, when it sends one: the schema version.
    pub api_version: Option<String>,
    /// When the platform says the event happened (RFC 3339).
    pub occurred_at: Option<String>,
    /// The platform's own event id, when it has one apart from the delivery.
    pub event_id: Option<String>,
    /// The headers handed to transforms and kept with the row (lower-case
    /// names, in the order received; never a signature).
    pub headers: Vec<(String, String)>,
    /// A body to store instead of the raw one, when the raw one is an
    /// envelope the transform should not have to open (Wix's JWT).
    pub body: Option<Vec<u8>>,
}

/// A connection as its creator states it (by hand, or at the end of an
/// install), before the provider checked it.
#[derive(Clone, Copy)]
pub struct Proposed<'a> {
    /// The account: a shop domain, a site URL, a seller id, a sender's name.
    pub account: &'a str,
    /// The provider's settings, `Value::Null` when none were given.
    pub settings: &'a Value,
    /// The secret webhooks are signed with (or the key they are checked
    /// with, for a platform that signs with a private key).
    pub secret: &'a [u8],
}

/// What the provider makes of a [`Proposed`] connection: the account as it
/// is stored and compared with what webhooks say, and the settings as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub account: String,
    /// None: the provider keeps no settings.
    pub settings: Option<Value>,
}

impl Checked {
    /// An account that is only a name the connection's creator chose (a
    /// sender that says no account in its webhooks): trimmed, non-empty,
    /// printable, at most 200 bytes.
    pub fn label(account: &str, settings: Option<Value>) -> Result<Self, String> {
        let account = account.trim();
        if account.is_empty() || account.len() > 200 || account.chars().any(char::is_control) {
            return Err(format!(
                "{account:?} is not a valid account name (1 to 200 printable characters)"
            ));
        }
        Ok(Self {
            account: account.to_owned(),
            settings,
        })
    }
}

/// Whether a provider that takes no settings was given none.
pub fn no_settings(settings: &Value) -> bool {
    settings.is_null() || settings.as_object().is_some_and(|o| o.is_empty())
}

/// A way a connection of the platform is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetUp {
    /// The secret (or key) the platform shows is pasted in
    /// (`connections add`, `POST /admin/v1/connections`).
    Secret,
    /// The merchant installs the app through the platform's OAuth; the
    /// gateway keeps its tokens fresh.
    Oauth,
    /// API credentials are given once and the gateway registers the
    /// webhooks at the platform itself.
    Credentials,
}

/// A webhook to sign as the platform would sign it, with a connection's
/// own secret and settings: what `webhooks send` posts to a gateway to try
/// a connection before the platform sends anything.
#[derive(Clone, Copy)]
pub struct TestDelivery<'a> {
    /// The connection's account, as stored (canonical).
    pub account: &'a str,
    pub settings: &'a Value,
    /// The connection's current secret.
    pub secret: &'a [u8],
    /// The topic, for a platform that names it in a header; the others
    /// read it from the body.
    pub topic: Option<&'a str>,
    pub body: &'a [u8],
    /// The delivery id to send: fresh, or reused to see deduplication.
    pub delivery_id: &'a str,
    /// For a platform that names its API version in a header.
    pub api_version: Option<&'a str>,
    /// When it is signed, Unix seconds (timestamped schemes).
    pub now: i64,
}

/// Why a request is refused. Each maps to one documented status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// No signature, or none that matches: 401.
    #[error("the signature does not match")]
    Signature,
    /// Signed, but outside the provider's timestamp tolerance: 401.
    #[error("the timestamp is outside the tolerance")]
    Stale,
    /// A header or envelope the provider needs is missing or malformed:
    /// 400. The message names the field, never a secret.
    #[error("{0}")]
    Malformed(String),
    /// A header the provider needs is absent: 400 `missing_header`.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is there but not in the platform's shape: 400
    /// `invalid_header`; the second part says why.
    #[error("header {0} is not valid: {1}")]
    InvalidHeader(&'static str, &'static str),
}

/// The JSON codes of the refusals whose names differ by platform: the
/// ones its operators' dashboards and runbooks already know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codes {
    /// [`Rejected::Signature`] and [`Rejected::Stale`].
    pub signature: &'static str,
    /// The webhook speaks for another account than the connection's.
    pub account_mismatch: &'static str,
}

impl Default for Codes {
    fn default() -> Self {
        Self {
            signature: "invalid_signature",
            account_mismatch: "account_mismatch",
        }
    }
}

/// What [`Provider::after_publish`] returns: work that never fails (its
/// errors are logged and the work stays due).
pub type AfterPublish<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a connection's status lets through (see [`Provider::accepts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Installed and working: every topic.
    Active,
    /// Uninstalled or redacted: only the topics the platform still sends
    /// then (compliance, deauthorisation).
    Gone,
}

/// One platform. Implementations live in `providers/<name>/`.
pub trait Provider: Send + Sync + 'static {
    /// The URL segment and the `provider` column: `woocommerce`, `wix`.
    fn id(&self) -> &'static str;

    /// A request the platform sends that is no webhook (WooCommerce's
    /// unsigned creation ping): answered 200, never stored, makes no event.
    fn is_ping(&self, _req: &Incoming<'_>) -> bool {
        false
    }

    /// Whether the request is genuine. Pure and constant-time over the raw
    /// body, trying every one of `keys.secrets`.
    fn verify(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<(), Rejected>;

    /// Checks a connection before it is stored: the account's shape (and
    /// its canonical spelling, which webhooks' accounts are compared with),
    /// the settings, that the secret is usable. The error names the field
    /// and never quotes the secret.
    fn check_connection(&self, proposed: &Proposed<'_>) -> Result<Checked, String>;

    /// Reads what the pipeline stores. Called only after [`Provider::verify`].
    fn describe(&self, req: &Incoming<'_>, keys: &Keys<'_>) -> Result<Described, Rejected>;

    /// Whether a connection in `standing` still takes `topic`.
    fn accepts(&self, standing: Standing, topic: &str) -> bool {
        standing == Standing::Active || self.lifecycle_topic(topic)
    }

    /// Topics that change the connection itself (uninstall, redaction,
    /// deauthorisation): still taken from a connection that is gone.
    fn lifecycle_topic(&self, _topic: &str) -> bool {
        false
    }

    /// The transform a webhook runs when no route names one: a reference
    /// as routes hold them, `builtin:NAME` for one under `transforms/`.
    fn default_transform(&self) -> &'static str;

    /// How its connections are made, the usual way first.
    fn set_up(&self) -> &'static [SetUp] {
        &[SetUp::Secret]
    }

    /// The topic, when the headers alone say it: a connection that is gone
    /// then refuses what it no longer takes before the body is read. None:
    /// decided after [`Provider::describe`].
    fn topic_in_headers(&self, _headers: &HeaderMap) -> Option<String> {
        None
    }

    /// How the gateway registers this platform's webhooks itself, given API
    /// credentials (see [`crate::pipeline::registration`]). None: this
    /// platform's webhooks are set up in its own dashboard, by hand.
    fn registrar(&self) -> Option<&dyn Registrar> {
        None
    }

    /// The headers a sender of the platform would send with `d.body`,
    /// signature included (`webhooks send`; the gateway itself never signs
    /// webhooks). An error says why it cannot: by default, that the
    /// platform signs with a private key of its own.
    fn sign_test(&self, d: &TestDelivery<'_>) -> Result<Vec<(String, String)>, String> {
        let _ = d;
        Err(format!(
            "{} signs its webhooks with a private key of its own, which the gateway does not \
             hold: send a webhook it delivered (curl --data-binary @body to the webhook URL)",
            self.id()
        ))
    }

    /// See [`Codes`].
    fn codes(&self) -> Codes {
        Codes::default()
    }

    /// Work the platform does once a batch's rows are finished (a platform
    /// that applies an uninstall only after its event is published). Called by
    /// the dispatcher with every row it finished, whichever provider's:
    /// an implementation looks at its own (`row.provider`).
    fn after_publish<'a>(
        &'a self,
        _store: &'a Store,
        _finished: &'a [(&'a InboxRow, Outcome)],
    ) -> AfterPublish<'a> {
        Box::pin(async {})
    }

    /// At start, before intake: the [`Provider::after_publish`] work a crash
    /// cut off (an effect whose webhook was published but not applied).
    fn recover<'a>(&'a self, _store: &'a Store) -> AfterPublish<'a> {
        Box::pin(async {})
    }
}

/// The registered providers, looked up by the `provider` column or the
/// URL segment.
#[derive(Clone, Default)]
pub struct Providers(Arc<[Arc<dyn Provider>]>);

impl Providers {
    pub fn new(list: Vec<Arc<dyn Provider>>) -> Self {
        Self(list.into())
    }

    /// The provider called `id`, if registered.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Provider>> {
        self.0.iter().find(|p| p.id() == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.0.iter()
    }

    /// The transform a provider's webhooks run when no route names one;
    /// None for a provider not registered.
    pub fn default_transform(&self, id: &str) -> Option<&'static str> {
        self.get(id).map(|p| p.default_transform())
    }
}
