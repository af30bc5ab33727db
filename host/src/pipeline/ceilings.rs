//! What may a workspace ask for? The ceilings an operator sets per workspace
//! (DESIGN §6b) over the per-call limits, and the quota on its transform
//! uploads.
//!
//! A ceiling is enforced twice: a workspace token's route change or dry run
//! that asks for more is refused (so the team hears about it), and every
//! call of the workspace's webhooks runs under the minimum of its route's
//! limits and the ceilings (so lowering a ceiling also clamps the routes
//! already saved, and routes an operator made are held to it as well).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pipeline::route::RouteLimits;
use crate::pipeline::transform::Limits;
use crate::store::CeilingRow;

/// The most one call of a workspace's webhooks may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ceilings {
    pub cpu_ms: u64,
    pub memory_bytes: usize,
    pub max_events: usize,
    pub output_bytes: usize,
}

impl Default for Ceilings {
    /// Generous multiples of the default limits (`Limits::default`), so
    /// routes that raise a limit for a real need keep working, yet small
    /// enough that one workspace's calls cannot take the host's memory or
    /// its transform slots: see `config.default.toml`, `[ceilings]`.
    fn default() -> Self {
        Ceilings {
            cpu_ms: 1000,
            memory_bytes: 64 << 20,
            max_events: 1000,
            output_bytes: 4 << 20,
        }
    }
}

/// A requested limit over its ceiling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {requested} is above this workspace's ceiling of {ceiling}")]
pub struct AboveCeiling {
    pub field: &'static str,
    pub requested: u64,
    pub ceiling: u64,
}

impl Ceilings {
    /// The limits a call runs under: each one no higher than its ceiling.
    pub fn clamp(&self, limits: &Limits) -> Limits {
        Limits {
            memory_bytes: limits.memory_bytes.min(self.memory_bytes),
            cpu: limits.cpu.min(Duration::from_millis(self.cpu_ms)),
            output_bytes: limits.output_bytes.min(self.output_bytes),
            max_events: limits.max_events.min(self.max_events),
            log_lines: limits.log_lines,
        }
    }

    /// Whether a workspace may ask for these limits: every limit it names
    /// must be within its ceiling. Limits it leaves out take the defaults,
    /// which `clamp` holds to the ceilings at run time.
    pub fn check(&self, requested: &RouteLimits) -> Result<(), AboveCeiling> {
        let pairs = [
            ("cpu_ms", requested.cpu_ms, self.cpu_ms),
            (
                "memory_bytes",
                requested.memory_bytes.map(as_u64),
                as_u64(self.memory_bytes),
            ),
            (
                "max_events",
                requested.max_events.map(as_u64),
                as_u64(self.max_events),
            ),
            (
                "output_bytes",
                requested.output_bytes.map(as_u64),
                as_u64(self.output_bytes),
            ),
        ];
        for (field, requested, ceiling) in pairs {
            if let Some(requested) = requested
                && requested > ceiling
            {
                return Err(AboveCeiling {
                    field,
                    requested,
                    ceiling,
                });
            }
        }
        Ok(())
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A workspace's own ceilings as an operator set them; a field left out
/// (null) keeps the configured default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CeilingOverrides {
    pub cpu_ms: Option<u64>,
    pub memory_bytes: Option<usize>,
    pub max_events: Option<usize>,
    pub output_bytes: Option<usize>,
}

impl CeilingOverrides {
    pub fn over(&self, base: &Ceilings) -> Ceilings {
        Ceilings {
            cpu_ms: self.cpu_ms.unwrap_or(base.cpu_ms),
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
            max_events: self.max_events.unwrap_or(base.max_events),
            output_bytes: self.output_bytes.unwrap_or(base.output_bytes),
        }
    }

    /// Zero would make every call fail, and the store keeps 64-bit signed
    /// integers.
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("cpu_ms", self.cpu_ms),
            ("memory_bytes", self.memory_bytes.map(as_u64)),
            ("max_events", self.max_events.map(as_u64)),
            ("output_bytes", self.output_bytes.map(as_u64)),
        ];
        for (field, value) in fields {
            match value {
                Some(0) => return Err(format!("{field} must be above zero")),
                Some(v) if v > i64::MAX as u64 => return Err(format!("{field} is too large")),
                _ => {}
            }
        }
        Ok(())
    }

    /// As stored: (cpu_ms, memory_bytes, max_events, output_bytes).
    pub fn to_columns(&self) -> [Option<i64>; 4] {
        let col = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        [
            col(self.cpu_ms),
            col(self.memory_bytes.map(as_u64)),
            col(self.max_events.map(as_u64)),
            col(self.output_bytes.map(as_u64)),
        ]
    }

    pub fn from_row(row: &CeilingRow) -> Self {
        // Written by `to_columns` after `validate`: positive. A value edited
        // by hand into a negative one is read as the smallest ceiling rather
        // than as "none".
        let pos = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0).max(1));
        let size = |v: Option<i64>| pos(v).map(|v| usize::try_from(v).unwrap_or(usize::MAX));
        CeilingOverrides {
            cpu_ms: pos(row.cpu_ms),
            memory_bytes: size(row.memory_bytes),
            max_events: size(row.max_events),
            output_bytes: size(row.output_bytes),
        }
    }
}

/// Every workspace's ceilings, as the dispatcher applies them.
#[derive(Debug, Clone, Default)]
pub struct CeilingTable {
    default: Ceilings,
    by_workspace: HashMap<String, Ceilings>,
}

impl CeilingTable {
    pub fn new(default: Ceilings, rows: &[CeilingRow]) -> Self {
        let by_workspace = rows
            .iter()
            .map(|r| {
                (
                    r.workspace_id.clone(),
                    CeilingOverrides::from_row(r).over(&default),
                )
            })
            .collect();
        Self {
            default,
            by_workspace,
        }
    }

    pub fn for_workspace(&self, workspace_id: &str) -> Ceilings {
        self.by_workspace
            .get(workspace_id)
            .copied()
            .unwrap_or(self.default)
    }
}

/// How much a workspace may keep uploaded: versions, and their bytes
/// together. Operators' uploads are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadQuota {
    pub transforms: u64,
    pub bytes: u64,
}

impl Default for UploadQuota {
    /// A typical Rust transform is 0.2-2 MB: 64 versions leave room for a
    /// long history, 128 MiB for a few large components (an embedded
    /// interpreter), and together they bound what one team's uploads cost
    /// the database and every replica's compiled-code cache.
    fn default() -> Self {
        UploadQuota {
            transforms: 64,
            bytes: 128 << 20,
        }
    }
}

/// What one replica enforces for every workspace: the default ceilings and
/// the upload quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    pub ceilings: Ceilings,
    pub upload_quota: UploadQuota,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_clamped_to_the_ceilings() {
        let c = Ceilings {
            cpu_ms: 100,
            memory_bytes: 1 << 20,
            max_events: 5,
            output_bytes: 1000,
        };
        let clamped = c.clamp(&Limits::default());
        assert_eq!(clamped.cpu, Duration::from_millis(50), "below: kept");
        assert_eq!(clamped.memory_bytes, 1 << 20);
        assert_eq!(clamped.max_events, 5);
        assert_eq!(clamped.output_bytes, 1000);
        assert_eq!(clamped.log_lines, Limits::default().log_lines);
    }

    #[test]
    fn only_named_limits_are_checked() {
        let c = Ceilings::default();
        assert!(c.check(&RouteLimits::default()).is_ok());
        let at = RouteLimits {
            cpu_ms: Some(c.cpu_ms),
            memory_bytes: Some(c.memory_bytes),
            max_events: Some(c.max_events),
            output_bytes: Some(c.output_bytes),
        };
        assert!(c.check(&at).is_ok());
        let above = RouteLimits {
            max_events: Some(c.max_events + 1),
            ..RouteLimits::default()
        };
        let e = c.check(&above).unwrap_err();
        assert_eq!((e.field, e.ceiling), ("max_events", 1000));
        assert!(e.to_string().contains("1001"), "{e}");
    }

    #[test]
    fn overrides_keep_the_defaults_they_leave_out() {
        let o = CeilingOverrides {
            max_events: Some(7),
            ..CeilingOverrides::default()
        };
        let c = o.over(&Ceilings::default());
        assert_eq!(c.max_events, 7);
        assert_eq!(c.cpu_ms, Ceilings::default().cpu_ms);
        assert!(o.validate().is_ok());
        let zero = CeilingOverrides {
            cpu_ms: Some(0),
            ..CeilingOverrides::default()
        };
        assert!(zero.validate().is_err());
    }
}
