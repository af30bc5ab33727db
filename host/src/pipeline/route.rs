//! Which transform serves a webhook? The routing table (DESIGN §4).
//!
//! A route maps (provider, workspace?, brand?, topic pattern) to a transform
//! and its JSON config. The most specific route wins: brand over workspace
//! over global, then an exact topic over a glob, then the longer glob. A
//! topic no route covers is served by the built-in `shopify-default`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::pipeline::transform::Limits;
use crate::store::RouteRow;

pub const BUILTIN_PREFIX: &str = "builtin:";
pub const DEFAULT_TRANSFORM: &str = "builtin:shopify-default";

#[derive(Debug, Clone)]
pub struct Route {
    /// The route's row, which each attempt records it ran by.
    pub id: i64,
    pub workspace_id: Option<String>,
    pub brand_id: Option<String>,
    pub provider: String,
    pub topic_pattern: String,
    /// A component digest, or `builtin:<name>`.
    pub transform: String,
    /// Runs beside `transform`, unpublished, for comparison.
    pub shadow: Option<String>,
    pub config: Arc<str>,
    pub limits: RouteLimits,
}

/// Per-route overrides of the default limits; absent fields keep defaults.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RouteLimits {
    pub memory_bytes: Option<usize>,
    pub cpu_ms: Option<u64>,
    pub output_bytes: Option<usize>,
    pub max_events: Option<usize>,
}

impl RouteLimits {
    pub fn apply(&self, base: &Limits) -> Limits {
        let mut l = base.clone();
        if let Some(v) = self.memory_bytes {
            l.memory_bytes = v;
        }
        if let Some(v) = self.cpu_ms {
            l.cpu = Duration::from_millis(v);
        }
        if let Some(v) = self.output_bytes {
            l.output_bytes = v;
        }
        if let Some(v) = self.max_events {
            l.max_events = v;
        }
        l
    }
}

#[derive(Debug, thiserror::Error)]
#[error("route {id}: {message}")]
pub struct RouteError {
    pub id: i64,
    pub message: String,
}

/// An immutable snapshot of the routes, most specific first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn from_rows(rows: &[RouteRow]) -> Result<Self, RouteError> {
        let mut routes = rows
            .iter()
            .map(|r| {
                let err = |message: String| RouteError { id: r.id, message };
                serde_json::from_str::<serde_json::Value>(&r.config)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .ok_or_else(|| err("config is not a JSON object".into()))?;
                let limits = match &r.limits {
                    Some(l) => serde_json::from_str(l).map_err(|e| err(format!("limits: {e}")))?,
                    None => RouteLimits::default(),
                };
                Ok(Route {
                    id: r.id,
                    workspace_id: Some(r.workspace_id.clone()).filter(|s| !s.is_empty()),
                    brand_id: Some(r.brand_id.clone()).filter(|s| !s.is_empty()),
                    provider: r.provider.clone(),
                    topic_pattern: r.topic_pattern.clone(),
                    transform: r.transform.clone(),
                    shadow: r.shadow_transform.clone(),
                    config: Arc::from(r.config.as_str()),
                    limits,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        routes.sort_by_key(|r| std::cmp::Reverse(specificity(r)));
        Ok(Self { routes })
    }

    pub fn resolve(
        &self,
        provider: &str,
        workspace: &str,
        brand: &str,
        topic: &str,
    ) -> Option<&Route> {
        self.routes.iter().find(|r| {
            r.provider == provider
                && r.workspace_id.as_deref().is_none_or(|w| w == workspace)
                && r.brand_id.as_deref().is_none_or(|b| b == brand)
                && glob_match(&r.topic_pattern, topic)
        })
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn specificity(r: &Route) -> (u8, bool, usize) {
    let scope = match (&r.brand_id, &r.workspace_id) {
        (Some(_), _) => 2,
        (None, Some(_)) => 1,
        (None, None) => 0,
    };
    let exact = !r.topic_pattern.contains('*');
    (scope, exact, r.topic_pattern.len())
}

/// `*` matches any run of characters (including `/`); everything else is
/// literal. Topics are short, so the simple backtracking form is plenty.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, ws: &str, brand: &str, pattern: &str, transform: &str) -> RouteRow {
        RouteRow {
            id,
            provider: "shopify".into(),
            workspace_id: ws.into(),
            brand_id: brand.into(),
            topic_pattern: pattern.into(),
            transform: transform.into(),
            config: "{}".into(),
            limits: None,
            shadow_transform: None,
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "orders/create"));
        assert!(glob_match("orders/*", "orders/create"));
        assert!(!glob_match("orders/*", "products/create"));
        assert!(glob_match("*/create", "orders/create"));
        assert!(glob_match("orders/create", "orders/create"));
        assert!(!glob_match("orders/create", "orders/created"));
        assert!(glob_match("o*s/c*e", "orders/create"));
    }

    #[test]
    fn most_specific_wins() {
        let t = RouteTable::from_rows(&[
            row(1, "", "", "*", "global"),
            row(2, "w", "", "orders/*", "ws-glob"),
            row(3, "w", "", "orders/create", "ws-exact"),
            row(4, "w", "b", "*", "brand-any"),
        ])
        .unwrap();
        let pick = |ws, b, topic| {
            t.resolve("shopify", ws, b, topic)
                .map(|r| r.transform.as_str())
        };
        assert_eq!(pick("w", "b", "orders/create"), Some("brand-any"));
        assert_eq!(pick("w", "x", "orders/create"), Some("ws-exact"));
        assert_eq!(pick("w", "x", "orders/paid"), Some("ws-glob"));
        assert_eq!(pick("v", "x", "orders/paid"), Some("global"));
        assert!(t.resolve("other", "w", "b", "x").is_none());
    }

    #[test]
    fn bad_config_or_limits_are_rejected() {
        let mut bad = row(1, "", "", "*", "t");
        bad.config = "[1]".into();
        assert!(RouteTable::from_rows(&[bad]).is_err());
        let mut bad = row(2, "", "", "*", "t");
        bad.limits = Some(r#"{"cpu_seconds": 5}"#.into());
        assert!(RouteTable::from_rows(&[bad]).is_err());
    }
}
