//! HTTP in and out: the public and admin routers, and the client the CLI
//! uses to reach a running gateway's admin API. Handlers only translate
//! between HTTP and the layers below; a provider's own routes (Shopify's
//! OAuth install) arrive finished and are merged as they are.

use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::inbox::Inbox;
use crate::pipeline::provider::Providers;
use crate::pipeline::publish::Sink;
use crate::store::Store;
use crate::support::vault::{Secret, Vault};

pub mod admin;
pub mod admin_client;
pub mod http;

/// What the handlers of both listeners share.
#[derive(Clone)]
pub struct AppState {
    pub inbox: Arc<Inbox>,
    pub store: Store,
    pub sink: Arc<Sink>,
    /// An operator token for the admin API, beside the stored ones; see
    /// [`admin`] for who may do what.
    pub admin_token: Option<Secret>,
    pub admin: admin::AdminState,
    /// The registered platforms (intake's metrics labels).
    pub providers: Providers,
    /// `/ready` fails while the oldest pending webhook is older than this.
    pub max_backlog_age: Option<Duration>,
    /// Encrypts the webhook secrets of connections added over the admin API.
    pub vault: Arc<Vault>,
    /// How long a secret replaced over the admin API keeps verifying
    /// (`connections.previous_secret_window`).
    pub previous_secret_window: Duration,
    /// Where the public listener is reached from the internet, when known
    /// (`shopify.public_base_url`): webhook URLs are answered whole then,
    /// and registrations at a platform can be made.
    pub public_base_url: Option<String>,
    /// The providers' own configuration sections, handed to a registration.
    pub provider_options: crate::pipeline::registration::ProviderOptions,
    /// The token refreshers of the apps this gateway runs (the connection
    /// API's `refresh`), by provider.
    pub refreshers: admin::connection_actions::Refreshers,
}
