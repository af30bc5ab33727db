//! Puts the pieces together: store, sink, transform runtime, dispatcher and
//! HTTP server, and takes them down in order (stop intake, finish the work in
//! hand, flush the producer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::api::AppState;
use crate::api::admin::AdminState;
use crate::api::http;
use crate::pipeline::dispatch::{DispatchConfig, DispatchError, Dispatcher};
use crate::pipeline::event::Topics;
use crate::pipeline::inbox::Inbox;
use crate::pipeline::provider::Providers;
use crate::pipeline::publish::kafka::{KafkaConfig, KafkaSink};
use crate::pipeline::publish::{PublishError, Sink};
use crate::pipeline::transform::{LoadError, Runtime, RuntimeConfig};
use crate::store::{Store, StoreError};
use crate::support::vault::{Secret, Vault};

pub struct Config {
    pub database_url: String,
    /// The public listener: webhooks, OAuth, shop details, health.
    pub listen: SocketAddr,
    /// The admin listener: the admin API and `/metrics`; None: not served.
    pub admin_listen: Option<SocketAddr>,
    /// None: publish to the embedded event log.
    pub kafka: Option<KafkaConfig>,
    pub topics: Topics,
    pub max_body_bytes: usize,
    /// Connection limits and timeouts of the HTTP listener.
    pub http: http::HttpConfig,
    pub vault: Arc<Vault>,
    pub admin_token: Option<Secret>,
    pub dispatch: DispatchConfig,
    pub runtime: RuntimeConfig,
    /// The Shopify app for the OAuth install; None: no install flow.
    pub shopify: Option<crate::providers::shopify::oauth::ShopifyConfig>,
    /// The TikTok Shop app for its install; None: no install flow.
    pub tiktok_shop: Option<crate::providers::tiktok_shop::install::TikTokShopConfig>,
    /// The bearer token other services present to the shop-details
    /// endpoint; None: it refuses everyone.
    pub service_token: Option<Secret>,
    /// `/ready` fails while the oldest pending webhook is older than this
    /// (the dispatcher is stuck or far behind); None: backlog not checked.
    pub max_backlog_age: Option<std::time::Duration>,
    /// Connections in the database pool.
    pub database_max_connections: u32,
    /// How long a webhook secret replaced over the admin API keeps verifying.
    pub previous_secret_window: Duration,
    /// Publish the connections' `integration.*` events
    /// (`connections.integration_events`); false: they wait in the outbox.
    pub integration_events: bool,
    /// Where the public listener is reached from the internet; webhook
    /// addresses are built on it. None: unknown (nothing is registered).
    pub public_base_url: Option<String>,
    /// The providers' own configuration sections, for registrations.
    pub provider_options: crate::pipeline::registration::ProviderOptions,
    /// `[retention]`: what the pruner (run beside the dispatcher) removes.
    pub retention: crate::pipeline::prune::RetentionConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kafka: {0}")]
    Kafka(#[from] PublishError),
    #[error("transform runtime: {0}")]
    Runtime(#[from] LoadError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error(transparent)]
    OAuth(#[from] crate::providers::shopify::oauth::OAuthConfigError),
    #[error(transparent)]
    TikTokShop(#[from] crate::providers::tiktok_shop::install::TikTokShopConfigError),
    #[error("shop details: {0}")]
    ShopDetails(#[from] crate::providers::shopify::api::ShopifyError),
    #[error("listening on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("making the bootstrap operator token: {0}")]
    Bootstrap(#[from] crate::api::admin::AdminError),
}

/// A gateway that is serving. Drop does not stop it; call [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    /// Where the admin API and `/metrics` are served; None when turned off.
    pub admin_addr: Option<SocketAddr>,
    /// The operator token made at this start because none existed: the only
    /// copy of its plaintext, for the caller to show once.
    pub bootstrap_token: Option<Secret>,
    pub store: Store,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    admin_server: Option<JoinHandle<std::io::Result<()>>>,
    /// None on an intake-only replica, as is `dispatch`.
    dispatcher: Option<JoinHandle<()>>,
    dispatch: Option<Arc<Dispatcher>>,
    sink: Arc<Sink>,
    /// Subscribe OAuth connections to their webhooks (one per app);
    /// stopped with intake.
    registrars: Vec<JoinHandle<()>>,
    /// Refresh expiring tokens (one per app); a refresh under way is let
    /// finish.
    refreshers: Vec<JoinHandle<()>>,
    /// Samples the inbox backlog into the metrics gauges.
    sampler: JoinHandle<()>,
    /// Publishes the connections' `integration.*` events; what it has not
    /// sent when stopped waits in the outbox for the next start.
    integration_events: JoinHandle<()>,
    pruner: Option<JoinHandle<()>>,
}

/// How often the inbox gauges are refreshed from the store.
const BACKLOG_SAMPLE_EVERY: Duration = Duration::from_secs(5);

pub async fn start(cfg: Config) -> Result<Running, StartError> {
    // First, so that nothing counted during start-up is lost. A process that
    // already installed another recorder still serves; /metrics says why it
    // has nothing.
    if let Err(e) = crate::support::metrics::install() {
        tracing::warn!(error = %e, "metrics not available");
    }
    let store = Store::connect_with(&cfg.database_url, cfg.database_max_connections).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| StartError::Listen(cfg.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(cfg.listen, e))?;
    let admin_listener = match cfg.admin_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| StartError::Listen(at, e))?;
            let bound = l.local_addr().map_err(|e| StartError::Listen(at, e))?;
            Some((l, bound))
        }
        None => None,
    };
    let bootstrap_token = match &admin_listener {
        Some(_) if cfg.admin_token.is_none() => bootstrap_operator_token(&store).await?,
        _ => None,
    };
    let mut dispatch = cfg.dispatch;
    if dispatch.replica.is_empty() {
        dispatch.replica = crate::pipeline::dispatch::default_replica_name(Some(addr.port()));
    }
    tracing::info!(replica = %dispatch.replica, backend = ?store.backend(), "store ready");
    let sink = Arc::new(match cfg.kafka {
        Some(k) => Sink::Kafka(KafkaSink::new(k)?),
        None => Sink::Log(store.clone()),
    });
    let providers = Providers::new(crate::providers::all());
    // Lifecycle effects (uninstall, redaction, deauthorisation) a crash cut
    // off.
    for p in providers.iter() {
        p.recover(&store).await;
    }
    let runtime = Runtime::new(cfg.runtime)?;
    let wake = Arc::new(Notify::new());
    let admin_limits = dispatch.limits.clone();
    let tenants = dispatch.tenants;
    let event_topics = cfg.topics.clone();
    // An intake-only replica builds no dispatcher (nor loads transforms for
    // one): what it stores waits for a replica that publishes, and route
    // changes reach those by their polling.
    let dispatcher = if dispatch.enabled {
        Some(Arc::new(
            Dispatcher::new(
                store.clone(),
                sink.clone(),
                runtime.clone(),
                cfg.topics.clone(),
                dispatch,
                wake.clone(),
            )?
            .with_providers(providers.clone()),
        ))
    } else {
        None
    };
    let mut shop_details = crate::providers::shopify::shop_details::ShopDetailsConfig {
        service_token: cfg.service_token,
        ..Default::default()
    };
    if let Some(shopify) = &cfg.shopify {
        shop_details.admin_base_url = shopify.admin_base_url.clone();
        shop_details.api_version = shopify.api_version.clone();
        shop_details.http_timeout = shopify.http_timeout;
    }
    // The Shopify app's, when only it was given (as the tests' harness does).
    let public_base_url = cfg
        .public_base_url
        .or_else(|| cfg.shopify.as_ref().map(|s| s.public_base_url.clone()));
    let oauth = match cfg.shopify {
        Some(shopify) => Some(Arc::new(crate::providers::shopify::oauth::OAuth::new(
            shopify,
            store.clone(),
            cfg.vault.clone(),
        )?)),
        None => None,
    };
    let shop_details = Arc::new(crate::providers::shopify::shop_details::ShopDetails::new(
        shop_details,
        store.clone(),
        cfg.vault.clone(),
        oauth.clone(),
    )?);
    let inbox = Arc::new(Inbox::new(
        store.clone(),
        cfg.vault.clone(),
        wake,
        providers.clone(),
    ));
    let tiktok_shop = match cfg.tiktok_shop {
        Some(app) => Some(Arc::new(
            crate::providers::tiktok_shop::install::Install::new(
                app,
                store.clone(),
                cfg.vault.clone(),
            )?,
        )),
        None => None,
    };
    let provider_routes = crate::providers::shopify::routes(oauth.clone(), shop_details)
        .merge(crate::providers::tiktok_shop::routes(tiktok_shop.clone()));
    let refreshers: crate::api::admin::connection_actions::Refreshers = Arc::new(
        oauth
            .as_ref()
            .map(|o| o.refresher().clone())
            .into_iter()
            .chain(tiktok_shop.as_ref().map(|t| t.refresher().clone()))
            .map(|r| (r.provider(), r))
            .collect(),
    );
    let state = AppState {
        refreshers,
        inbox,
        store: store.clone(),
        sink: sink.clone(),
        admin_token: cfg.admin_token,
        admin: AdminState::new(
            runtime,
            cfg.topics,
            admin_limits,
            tenants,
            dispatcher.clone(),
        ),
        providers,
        max_backlog_age: cfg.max_backlog_age,
        vault: cfg.vault,
        previous_secret_window: cfg.previous_secret_window,
        public_base_url,
        provider_options: cfg.provider_options,
    };
    let (shutdown, rx) = watch::channel(false);

    let admin_server = admin_listener
        .as_ref()
        .map(|_| http::admin_router(state.clone()));
    let app = http::router(state, cfg.max_body_bytes, provider_routes);
    let server = tokio::spawn(http::serve(listener, app, cfg.http.clone(), rx.clone()));
    let (admin_server, admin_addr) = match (admin_listener, admin_server) {
        (Some((listener, bound)), Some(app)) => (
            Some(tokio::spawn(http::serve(
                listener,
                app,
                cfg.http,
                rx.clone(),
            ))),
            Some(bound),
        ),
        _ => (None, None),
    };
    let app_refreshers = oauth
        .as_ref()
        .map(|o| o.refresher())
        .into_iter()
        .chain(tiktok_shop.as_ref().map(|t| t.refresher()));
    let refreshers = app_refreshers
        .map(|r| {
            r.publish_events_to(sink.clone(), event_topics.clone());
            tokio::spawn(r.clone().run(rx.clone()))
        })
        .collect();
    let registrars = oauth
        .map(|o| tokio::spawn(o.run_registrar(rx.clone())))
        .into_iter()
        .chain(tiktok_shop.map(|t| tokio::spawn(t.run_registrar(rx.clone()))))
        .collect();
    let sampler = tokio::spawn(sample_backlog(store.clone(), rx.clone()));
    // The connections' `integration.*` events (pipeline::integration).
    let integration_events = tokio::spawn({
        let publisher =
            crate::pipeline::integration::Publisher::new(store.clone(), sink.clone(), event_topics);
        let (on, rx) = (cfg.integration_events, rx.clone());
        async move {
            if on {
                publisher.run(rx).await
            }
        }
    });
    // Retention runs where the dispatcher does: an intake-only replica
    // leaves it to those.
    let pruner = dispatcher.as_ref().map(|_| {
        tokio::spawn(crate::pipeline::prune::run(
            store.clone(),
            cfg.retention.clone(),
            rx.clone(),
        ))
    });
    let dispatch = dispatcher.clone();
    let dispatcher = dispatcher.map(|d| tokio::spawn(d.run(rx)));
    tracing::info!(%addr, admin = ?admin_addr, sink = sink.name(), dispatch = dispatch.is_some(), "gateway serving");
    Ok(Running {
        addr,
        admin_addr,
        bootstrap_token,
        store,
        shutdown,
        server,
        admin_server,
        dispatcher,
        dispatch,
        sink,
        registrars,
        refreshers,
        sampler,
        integration_events,
        pruner,
    })
}

/// An operator token when there is no way to be one: no configured admin
/// token and no live operator token in the store. The admin API takes no
/// anonymous caller (anyone behind a proxy on the same host would arrive
/// from loopback), so a fresh gateway makes one, as Jupyter does, and the
/// caller shows it once. Replicas starting together on an empty database
/// may each make one; each is a valid operator token, shown by its maker.
async fn bootstrap_operator_token(store: &Store) -> Result<Option<Secret>, StartError> {
    if store
        .any_live_operator_token()
        .await
        .map_err(crate::api::admin::AdminError::from)?
    {
        return Ok(None);
    }
    let created = crate::api::admin::create_token(
        store,
        crate::api::admin::TokenKind::Operator,
        None,
        BOOTSTRAP_TOKEN_NAME,
    )
    .await?;
    tracing::warn!(token_id = %created.id, "no operator token existed: made a bootstrap operator token (printed once on stderr, not logged)");
    Ok(Some(created.token))
}

/// The name of the operator token made at first start.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap";

/// Keeps the inbox gauges current, and the metrics recorder's histograms
/// drained when nobody scrapes. A gauge is only as fresh as its last sample,
/// which is why this runs on a timer rather than on each scrape: a scrape
/// must stay cheap however many scrapers there are.
async fn sample_backlog(store: Store, mut shutdown: watch::Receiver<bool>) {
    loop {
        match store.backlog().await {
            Ok((depth, oldest)) => {
                crate::support::metrics::inbox_backlog(depth, oldest, crate::store::now_ms())
            }
            Err(e) => tracing::debug!(error = %e, "inbox backlog not sampled"),
        }
        crate::support::metrics::upkeep();
        tokio::select! {
            _ = tokio::time::sleep(BACKLOG_SAMPLE_EVERY) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the listener that serves the admin API and `/metrics`.
    ///
    /// # Panics
    /// When the admin listener is turned off.
    pub fn admin_url(&self, path: &str) -> String {
        let addr = self.admin_addr.expect("the admin listener is on");
        format!("http://{addr}{path}")
    }

    /// Applies route changes made in the store now, rather than at the next
    /// periodic refresh. An intake-only replica has no routes to apply: 0.
    pub async fn reload_routes(&self) -> Result<usize, String> {
        match &self.dispatch {
            Some(d) => d.reload_routes().await,
            None => Ok(0),
        }
    }

    /// Stops intake, lets in-flight requests and the batch in hand finish,
    /// then flushes the producer.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for server in std::iter::once(self.server).chain(self.admin_server) {
            match server.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "http server ended with an error"),
                Err(e) => tracing::warn!(error = %e, "http server task failed"),
                Ok(Ok(())) => {}
            }
        }
        // Registrations are idempotent: one cut short is redone next start.
        for registrar in self.registrars {
            registrar.abort();
        }
        let _ = self.sampler.await;
        let _ = self.integration_events.await;
        // Each batch is its own transaction: stopping between them loses
        // nothing.
        if let Some(pruner) = self.pruner {
            pruner.abort();
        }
        // Not aborted: a refresh cut off between the platform's answer and
        // our commit would lose the rotated refresh token. Its calls time out.
        for mut refresher in self.refreshers {
            if tokio::time::timeout(Duration::from_secs(60), &mut refresher)
                .await
                .is_err()
            {
                tracing::warn!("token refresher did not stop in time; aborted");
                refresher.abort();
            }
        }
        if let Some(dispatcher) = self.dispatcher
            && let Err(e) = dispatcher.await
        {
            tracing::warn!(error = %e, "dispatcher task failed");
        }
        let sink = self.sink.clone();
        let _ = tokio::task::spawn_blocking(move || sink.flush(Duration::from_secs(10))).await;
        tracing::info!("gateway stopped");
    }
}
