//! `transforms`: scaffold, try, upload and inspect transform components.

use std::path::Path;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ionflux_gateway::config::Settings;
use ionflux_gateway::pipeline::dispatch;
use ionflux_gateway::pipeline::event::{self, Topics, TransformId};
use ionflux_gateway::pipeline::registry;
use ionflux_gateway::pipeline::transform::{Limits, Runtime, RuntimeConfig, Transform};
use ionflux_gateway::store::InboxRow;

use crate::{TransformsCommand, open_store};

pub(crate) fn runtime_for(cfg: &Settings) -> Result<Runtime> {
    Ok(Runtime::new(RuntimeConfig {
        pool_instances: 4,
        ..cfg.runtime()
    })?)
}

/// The template's files, embedded so that the binary alone can scaffold.
const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../guest-sdk/template/Cargo.toml"),
    ),
    (
        "README.md",
        include_str!("../../../guest-sdk/template/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../../guest-sdk/template/.gitignore"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../guest-sdk/template/src/lib.rs"),
    ),
];

fn new_transform(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!("{name:?} is not a good crate name: use lower-case letters, digits, - and _");
    }
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the guest SDK is not at {}; pass --sdk PATH to your checkout's guest-sdk",
            sdk.display()
        )
    })?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if dir.exists() && dir.read_dir()?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk_path = sdk.display().to_string().replace('\\', "/");
    for (file, text) in TEMPLATE {
        let text = text
            .replace("\"my-transform\"", &format!("{name:?}"))
            .replace("# my-transform", &format!("# {name}"))
            .replace("my_transform", &name.replace('-', "_"))
            .replace(
                "ionflux-guest = { path = \"../guest-sdk\" }",
                &format!("ionflux-guest = {{ path = {sdk_path:?} }}"),
            );
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("template files are in a folder"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

pub(crate) async fn transforms(cfg: &Settings, cmd: &TransformsCommand) -> Result<()> {
    match cmd {
        TransformsCommand::New { name, dir, sdk } => {
            let dir = new_transform(name, dir.as_deref(), sdk.as_deref())?;
            let wasm = format!(
                "{}/target/wasm32-wasip2/release/{}.wasm",
                dir.display(),
                name.replace('-', "_")
            );
            println!(
                "{}",
                serde_json::json!({
                    "dir": dir,
                    "test": format!("cd {} && cargo test", dir.display()),
                    "build": format!(
                        "cd {} && cargo build --release --target wasm32-wasip2",
                        dir.display()
                    ),
                    "component": wasm,
                })
            );
        }
        TransformsCommand::Push { file, name } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let store = open_store(cfg).await?;
            let pushed = registry::push(&store, &runtime_for(cfg)?, name, bytes).await?;
            println!("{}", serde_json::to_string(&pushed)?);
        }
        TransformsCommand::List => {
            for t in open_store(cfg).await?.transforms().await? {
                println!("{}", serde_json::to_string(&t)?);
            }
        }
        TransformsCommand::Show { digest } => {
            let store = open_store(cfg).await?;
            let Some(t) = store
                .transforms()
                .await?
                .into_iter()
                .find(|t| t.digest.starts_with(&digest.to_ascii_lowercase()))
            else {
                bail!("no stored transform {digest}");
            };
            let routes: Vec<_> = store
                .routes()
                .await?
                .into_iter()
                .filter(|r| r.transform == t.digest)
                .collect();
            println!(
                "{}",
                serde_json::json!({ "transform": t, "routes": routes })
            );
        }
        TransformsCommand::Test {
            file,
            fixture,
            topic,
            config,
            api_version,
            shop,
        } => {
            let component =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let body =
                std::fs::read(fixture).with_context(|| format!("reading {}", fixture.display()))?;
            let runtime = Runtime::new(RuntimeConfig {
                pool_instances: 1,
                ..RuntimeConfig::default()
            })?;
            let name = file
                .file_stem()
                .map_or("transform".into(), |s| s.to_string_lossy().into_owned());
            let t = runtime.load(&name, &component)?;
            for line in dry_run(&t, topic, api_version, shop, config, &cfg.limits(), body)? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// Runs one webhook through a transform as the dispatcher would, returning
/// the PlatformEvents (JSON) it would publish. Ids are placeholders.
fn dry_run(
    t: &Transform,
    topic: &str,
    api_version: &str,
    shop: &str,
    config: &str,
    limits: &Limits,
    body: Vec<u8>,
) -> Result<Vec<String>> {
    let nil = uuid::Uuid::nil().to_string();
    let row = InboxRow {
        id: 0,
        connection_id: nil.clone(),
        provider: ionflux_gateway::providers::shopify::ID.into(),
        workspace_id: nil.clone(),
        brand_id: nil,
        webhook_id: "dry-run".into(),
        topic: topic.into(),
        account: shop.into(),
        api_version: Some(api_version.into()),
        occurred_at: None,
        event_id: None,
        trace_id: "dry-run".into(),
        headers: vec![
            ("x-shopify-topic".into(), topic.into()),
            ("x-shopify-api-version".into(), api_version.into()),
        ],
        body,
        received_at: chrono::Utc::now().timestamp_millis(),
        attempts: 0,
    };
    let events = t
        .call(&dispatch::input_of(&row), config, limits)
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
    let id = TransformId {
        name: t.name(),
        digest: t.digest(),
    };
    event::platform_records(&row, &Topics::default(), &id, &events)
        .map_err(|(index, e)| anyhow::anyhow!("event {index}: {e}"))?
        .into_iter()
        .map(|r| Ok(String::from_utf8(r.payload)?))
        .collect()
}
