//! The bodies the load generator sends: real Shopify sample payloads, each
//! with the topic it belongs to, so the gateway's transforms see what they
//! would see in production.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::BenchError;

/// One sample webhook body.
#[derive(Debug, Clone)]
pub struct Payload {
    pub file: String,
    pub topic: String,
    pub api_version: String,
    pub body: Bytes,
}

/// Inclusive bounds on body size, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    pub min: usize,
    pub max: usize,
}

impl std::str::FromStr for SizeRange {
    type Err = String;

    /// `MAX` or `MIN-MAX`, each a number of bytes with an optional `k`
    /// (KiB) suffix: `8k`, `4k-7k`, `1000-20000`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = |v: &str| -> Result<usize, String> {
            let v = v.trim();
            let (digits, scale) = match v.strip_suffix(['k', 'K']) {
                Some(d) => (d, 1024),
                None => (v, 1),
            };
            digits
                .trim()
                .parse::<usize>()
                .map(|n| n * scale)
                .map_err(|_| format!("{v:?} is not a size (bytes, or a number with k)"))
        };
        let range = match s.split_once('-') {
            Some((lo, hi)) => SizeRange {
                min: bytes(lo)?,
                max: bytes(hi)?,
            },
            None => SizeRange {
                min: 0,
                max: bytes(s)?,
            },
        };
        if range.min > range.max {
            return Err(format!("{s:?}: the lower bound is above the upper"));
        }
        Ok(range)
    }
}

/// Where the sample payloads are when no directory is given: `shared/`
/// beside the checkout (as the tests find them), then relative to the
/// working directory.
pub fn default_dir() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        workspace.join("../shared/data/shopify-webhooks"),
        PathBuf::from("../shared/data/shopify-webhooks"),
        PathBuf::from("shared/data/shopify-webhooks"),
    ]
    .into_iter()
    .find(|d| d.is_dir())
}

/// What was loaded, and what was left out and why.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub payloads: Vec<Payload>,
    /// Lifecycle topics (`app/uninstalled`, the compliance topics) change
    /// the connection they arrive on: one `app/uninstalled` would turn every
    /// later webhook of that shop into a 403.
    pub skipped_lifecycle: usize,
    pub skipped_size: usize,
}

/// Every sample in `dir`: the files SOURCES.tsv lists (with its topics),
/// else every `*.json` one level down, the topic from the folder name
/// (`orders__create` → `orders/create`).
pub fn load(dir: &Path, size: Option<SizeRange>) -> Result<Loaded, BenchError> {
    let io =
        |path: &Path, e: std::io::Error| BenchError::Payloads(format!("{}: {e}", path.display()));
    let sources = dir.join("SOURCES.tsv");
    let listed: Vec<(String, String)> = if sources.is_file() {
        std::fs::read_to_string(&sources)
            .map_err(|e| io(&sources, e))?
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                let mut cols = l.split('\t');
                Some((cols.next()?.to_string(), cols.next()?.to_string()))
            })
            .collect()
    } else {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            if !entry.path().is_dir() {
                continue;
            }
            let folder = entry.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(entry.path()).map_err(|e| io(&entry.path(), e))? {
                let file = file.map_err(|e| io(&entry.path(), e))?;
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".json") {
                    found.push((format!("{folder}/{name}"), folder.replace("__", "/")));
                }
            }
        }
        found.sort();
        found
    };
    let mut loaded = Loaded {
        payloads: Vec::new(),
        skipped_lifecycle: 0,
        skipped_size: 0,
    };
    for (file, topic) in listed {
        if crate::providers::shopify::lifecycle::is_lifecycle_topic(&topic) {
            loaded.skipped_lifecycle += 1;
            continue;
        }
        let path = dir.join(&file);
        let body = std::fs::read(&path).map_err(|e| io(&path, e))?;
        if size.is_some_and(|r| body.len() < r.min || body.len() > r.max) {
            loaded.skipped_size += 1;
            continue;
        }
        loaded.payloads.push(Payload {
            api_version: api_version_of(&file),
            file,
            topic,
            body: Bytes::from(body),
        });
    }
    if loaded.payloads.is_empty() {
        return Err(BenchError::Payloads(format!(
            "no payload in {} fits (skipped {} lifecycle, {} by size)",
            dir.display(),
            loaded.skipped_lifecycle,
            loaded.skipped_size
        )));
    }
    Ok(loaded)
}

/// `gadget-schemas-2026-04-1.json` → `2026-04`; a name without one gets a
/// recent version, since the header is only passed through.
fn api_version_of(file: &str) -> String {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.strip_prefix("gadget-schemas-")
        .and_then(|rest| rest.get(..7))
        .filter(|v| v.as_bytes().get(4) == Some(&b'-'))
        .unwrap_or("2026-04")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "8k".parse::<SizeRange>().unwrap(),
            SizeRange { min: 0, max: 8192 }
        );
        assert_eq!(
            "4k-7k".parse::<SizeRange>().unwrap(),
            SizeRange {
                min: 4096,
                max: 7168
            }
        );
        assert!("9k-1k".parse::<SizeRange>().is_err());
        assert!("lots".parse::<SizeRange>().is_err());
    }

    #[test]
    fn api_versions_from_names() {
        assert_eq!(
            api_version_of("orders__create/gadget-schemas-2023-07-1.json"),
            "2023-07"
        );
        assert_eq!(api_version_of("x/order.json"), "2026-04");
    }
}
