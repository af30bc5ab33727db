//! Which transform versions exist, and which one serves a route? Uploads are
//! validated before they are stored: the component must compile, implement
//! an `ionflux:transform` world (0.2.0, or 0.1.0 as before it; which one is
//! recorded with the version), and survive a smoke call. A version is
//! immutable and named by the sha256 of its bytes.

use serde::Serialize;

use crate::pipeline::builtin;
use crate::pipeline::ceilings::UploadQuota;
use crate::pipeline::route::{BUILTIN_PREFIX, RouteLimits, RouteTable};
use crate::pipeline::transform::{
    Input, Limits, LoadError, Runtime, Transform, TransformError, World,
};
use crate::store::ceilings::{OwnedPut, UploadUsage};
use crate::store::{RouteRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("the component fails its smoke call: {0}")]
    Smoke(TransformError),
    #[error("transform name {0:?} must be 1-64 characters of [A-Za-z0-9._-]")]
    InvalidName(String),
    #[error(
        "no transform {0:?}: upload it first (or use a built-in: {builtins})",
        builtins = builtin::references().join(", ")
    )]
    UnknownTransform(String),
    #[error("invalid route: {0}")]
    InvalidRoute(String),
    #[error(
        "this upload ({size} bytes) would take the workspace past its upload quota of {} \
         versions and {} bytes (it keeps {} versions, {} bytes): delete versions it no longer \
         uses with DELETE /admin/v1/transforms/{{digest}}",
        quota.transforms, quota.bytes, usage.transforms, usage.bytes
    )]
    QuotaExceeded {
        size: usize,
        usage: UploadUsage,
        quota: UploadQuota,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("validation task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub digest: String,
    pub name: String,
    pub size: usize,
    /// The version of the contract the component implements.
    pub world: World,
}

/// A small but realistic order: enough for a transform to take its normal
/// path, so a component that cannot handle ordinary input is refused.
const SMOKE_BODY: &[u8] = br##"{"id":820982911946154508,"name":"#1001","email":"smoke@example.com","currency":"USD","total_price":"199.00","subtotal_price":"199.00","financial_status":"paid","line_items":[{"id":466157049,"product_id":632910392,"title":"IPod Nano - 8gb","quantity":1,"price":"199.00","sku":"IPOD2008GREEN"}],"customer":{"id":115310627314723954,"email":"smoke@example.com","first_name":"John","last_name":"Smith","orders_count":3}}"##;

/// Runs the component once on a sample order. Returning events, nothing, or
/// a refusal of its own (`invalid-input`, `failed`) is fine; a trap, a limit
/// or invalid output is not.
pub fn smoke(t: &Transform) -> Result<(), TransformError> {
    let headers = vec![("x-shopify-topic".to_string(), "orders/create".to_string())];
    let input = Input {
        provider: "shopify",
        topic: "orders/create",
        account_id: "smoke-test.myshopify.com",
        workspace_id: "00000000-0000-0000-0000-000000000000",
        brand_id: "00000000-0000-0000-0000-000000000000",
        api_version: Some("2026-04"),
        delivery_id: "smoke-test",
        occurred_at: None,
        event_id: None,
        headers: &headers,
        body: SMOKE_BODY,
    };
    match t.call(&input, "{}", &Limits::default()) {
        Ok(_) | Err(TransformError::InvalidInput(_) | TransformError::Failed(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Validates and stores a component. Pushing the same bytes again is a
/// no-op that returns the same digest.
pub async fn push(
    store: &Store,
    runtime: &Runtime,
    name: &str,
    component: Vec<u8>,
) -> Result<Pushed, RegistryError> {
    let (component, digest, world) = validate(runtime, name, component).await?;
    store.put_transform(&digest, name, &component).await?;
    store.set_transform_world(&digest, world.as_str()).await?;
    Ok(Pushed {
        digest,
        name: name.to_string(),
        size: component.len(),
        world,
    })
}

/// As [`push`], for a workspace: the version is recorded as the
/// workspace's, within its upload quota. The same bytes again only rename
/// the workspace's version and cost nothing.
pub async fn push_for_workspace(
    store: &Store,
    runtime: &Runtime,
    name: &str,
    component: Vec<u8>,
    workspace: &str,
    quota: UploadQuota,
) -> Result<Pushed, RegistryError> {
    if !valid_name(name) {
        return Err(RegistryError::InvalidName(name.to_string()));
    }
    let size = component.len();
    let over = |usage: UploadUsage| RegistryError::QuotaExceeded { size, usage, quota };
    // Refused before compiling when plainly over: compiling is what costs.
    // The store checks again, atomically, when it records the upload.
    let digest = crate::pipeline::transform::digest(&component);
    let owned = store
        .transform_owners(&digest)
        .await?
        .iter()
        .any(|w| w == workspace);
    let (max_transforms, max_bytes) = (
        i64::try_from(quota.transforms).unwrap_or(i64::MAX),
        i64::try_from(quota.bytes).unwrap_or(i64::MAX),
    );
    if !owned {
        let usage = store.upload_usage(workspace).await?;
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        if usage.transforms.saturating_add(1) > max_transforms
            || usage.bytes.saturating_add(size) > max_bytes
        {
            return Err(over(usage));
        }
    }
    let (component, digest, world) = validate(runtime, name, component).await?;
    match store
        .put_owned_transform(
            &digest,
            name,
            &component,
            workspace,
            max_transforms,
            max_bytes,
        )
        .await?
    {
        OwnedPut::Stored => {
            store.set_transform_world(&digest, world.as_str()).await?;
            Ok(Pushed {
                digest,
                name: name.to_string(),
                size,
                world,
            })
        }
        OwnedPut::OverQuota(usage) => Err(over(usage)),
    }
}

/// Compiles, checks the world and smoke-calls a component; answers it back
/// with its digest and world.
async fn validate(
    runtime: &Runtime,
    name: &str,
    component: Vec<u8>,
) -> Result<(Vec<u8>, String, World), RegistryError> {
    if !valid_name(name) {
        return Err(RegistryError::InvalidName(name.to_string()));
    }
    let runtime = runtime.clone();
    let owned_name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let t = runtime.load(&owned_name, &component)?;
        smoke(&t).map_err(RegistryError::Smoke)?;
        Ok::<_, RegistryError>((component, t.digest().to_string(), t.world()))
    })
    .await
    .map_err(|e| RegistryError::Task(e.to_string()))?
}

/// What an operator asks for when setting a route.
#[derive(Debug, Clone, Default)]
pub struct RouteSpec {
    /// The platform whose webhooks the route serves (`shopify`,
    /// `woocommerce`, …): a route never matches another platform's topics.
    pub provider: String,
    pub workspace_id: Option<String>,
    pub brand_id: Option<String>,
    pub topic_pattern: String,
    /// A digest (or a unique prefix of at least 12 hex digits), or
    /// `builtin:NAME`.
    pub transform: String,
    pub config: Option<String>,
    pub limits: Option<String>,
    /// A second transform that runs on the same webhooks without
    /// publishing, to compare before promoting it.
    pub shadow: Option<String>,
}

/// Checks and saves a route. The transform must exist, the config must be a
/// JSON object and the limits must parse, so a typo cannot take a route down.
pub async fn set_route(
    store: &Store,
    spec: &RouteSpec,
    actor: &str,
) -> Result<RouteRow, RegistryError> {
    let transform = resolve_transform(store, &spec.transform).await?;
    let shadow = match &spec.shadow {
        Some(s) => Some(resolve_transform(store, s).await?),
        None => None,
    };
    if spec.topic_pattern.is_empty() {
        return Err(RegistryError::InvalidRoute(
            "the topic pattern is empty".into(),
        ));
    }
    if !is_provider_id(&spec.provider) {
        return Err(RegistryError::InvalidRoute(format!(
            "{:?} is not a provider's name",
            spec.provider
        )));
    }
    let config = spec.config.clone().unwrap_or_else(|| "{}".into());
    if let Some(limits) = &spec.limits {
        let parsed: RouteLimits = serde_json::from_str(limits)
            .map_err(|e| RegistryError::InvalidRoute(format!("limits: {e}")))?;
        let applied = parsed.apply(&Limits::default());
        if applied.memory_bytes == 0 || applied.cpu.is_zero() || applied.max_events == 0 {
            return Err(RegistryError::InvalidRoute(
                "limits must be above zero".into(),
            ));
        }
    }
    let row = RouteRow {
        id: 0,
        provider: spec.provider.clone(),
        workspace_id: spec.workspace_id.clone().unwrap_or_default(),
        brand_id: spec.brand_id.clone().unwrap_or_default(),
        topic_pattern: spec.topic_pattern.clone(),
        transform,
        config,
        limits: spec.limits.clone(),
        shadow_transform: shadow,
    };
    // The same parser the dispatcher uses, so what is saved will load.
    RouteTable::from_rows(std::slice::from_ref(&row))
        .map_err(|e| RegistryError::InvalidRoute(e.message))?;
    store.set_route(&row, actor).await?;
    stored(store, &row).await
}

/// The route as stored (with its id), after a write.
async fn stored(store: &Store, row: &RouteRow) -> Result<RouteRow, RegistryError> {
    Ok(store
        .routes()
        .await?
        .into_iter()
        .find(|r| {
            r.provider == row.provider
                && r.workspace_id == row.workspace_id
                && r.brand_id == row.brand_id
                && r.topic_pattern == row.topic_pattern
        })
        .unwrap_or_else(|| row.clone()))
}

/// Makes a route's shadow its primary (and drops the shadow). The old
/// primary stays in the history, so rolling back is one `set_route`.
pub async fn promote(
    store: &Store,
    provider: &str,
    workspace_id: Option<&str>,
    brand_id: Option<&str>,
    topic_pattern: &str,
    actor: &str,
) -> Result<RouteRow, RegistryError> {
    let (workspace_id, brand_id) = (workspace_id.unwrap_or(""), brand_id.unwrap_or(""));
    let mut route = store
        .routes()
        .await?
        .into_iter()
        .find(|r| {
            r.provider == provider
                && r.workspace_id == workspace_id
                && r.brand_id == brand_id
                && r.topic_pattern == topic_pattern
        })
        .ok_or_else(|| RegistryError::InvalidRoute("no route with that scope and topic".into()))?;
    let shadow = route
        .shadow_transform
        .take()
        .ok_or_else(|| RegistryError::InvalidRoute("the route has no shadow to promote".into()))?;
    route.transform = shadow;
    store.set_route(&route, actor).await?;
    Ok(route)
}

/// A provider's name as the `provider` column and URL segment spell it.
pub fn is_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

async fn resolve_transform(store: &Store, reference: &str) -> Result<String, RegistryError> {
    if let Some(name) = reference.strip_prefix(BUILTIN_PREFIX) {
        return if builtin::names().any(|n| n == name) {
            Ok(reference.to_string())
        } else {
            Err(RegistryError::UnknownTransform(reference.to_string()))
        };
    }
    let reference = reference.to_ascii_lowercase();
    let matches: Vec<String> = store
        .transforms()
        .await?
        .into_iter()
        .map(|t| t.digest)
        .filter(|d| *d == reference || (reference.len() >= 12 && d.starts_with(&reference)))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(RegistryError::UnknownTransform(reference)),
    }
}
