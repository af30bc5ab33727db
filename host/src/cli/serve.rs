//! `serve`, and `healthcheck`, which asks a serving gateway whether it is up.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ionflux_gateway::config::Settings;
use ionflux_gateway::server;

use crate::{HealthcheckArgs, serve_vault};

pub(crate) async fn healthcheck(cfg: &Settings, args: &HealthcheckArgs) -> Result<()> {
    let mut addr = args.listen.unwrap_or(cfg.listen);
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}{}", args.path);
    let status = reqwest::Client::builder()
        .timeout(args.timeout)
        .no_proxy()
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .status();
    if status != reqwest::StatusCode::OK {
        bail!("GET {url}: {status}");
    }
    Ok(())
}

pub(crate) async fn serve(cfg: &Settings) -> Result<()> {
    let dir = cfg.data_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let vault = Arc::new(serve_vault(cfg)?);
    let config = cfg.server_config(vault)?;
    let running = server::start(config).await?;
    eprintln!("ionflux-gateway listening on http://{}", running.addr);
    match running.admin_addr {
        Some(admin) => eprintln!("admin API and /metrics on http://{admin}"),
        None => eprintln!("admin listener off"),
    }
    if let Some(token) = &running.bootstrap_token {
        // Straight to the terminal, once: not through the log pipeline,
        // which may be shipped elsewhere.
        eprintln!(
            "\nNo operator token existed, so one was made (shown this once):\n\n    {}\n\n\
             Use it as `Authorization: Bearer <token>` on the admin listener. Make named \
             tokens with `ionflux-gateway tokens create`, then revoke this one \
             (`tokens list`, `tokens revoke ID`).\n",
            String::from_utf8_lossy(token.expose())
        );
    }
    shutdown_signal().await;
    tracing::info!("shutting down: intake stops, work in hand finishes");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
