//! A local fake Shopify for trying the OAuth install by hand (the README's
//! "Connecting a store with OAuth"), and a minter of user-service JWTs.
//!
//! ```text
//! fake-shopify [--listen 127.0.0.1:8081] [--client-id demo] [--client-secret demo_app_secret]
//! fake-shopify jwt --secret SECRET --workspace UUID [--audience AUD] [--brand UUID] [--sub user-1] [--ttl-secs 3600]
//! ```
//!
//! The first serves `ionflux_tests::fake_shopify` (authorize, code exchange,
//! token refresh, webhook subscriptions, shop.json) on a loopback address
//! until interrupted. The second prints an HS256 JWT with `sub`,
//! `workspaces: [UUID]`, `iat` and `exp`, and `aud` and `brands: [UUID]`
//! when given.

use std::collections::HashMap;
use std::net::SocketAddr;

use ionflux_tests::fake_shopify::FakeShopify;

const USAGE: &str = "usage:
  fake-shopify [--listen 127.0.0.1:8081] [--client-id demo] [--client-secret demo_app_secret]
  fake-shopify jwt --secret SECRET --workspace UUID [--audience AUD] [--brand UUID] [--sub user-1] [--ttl-secs 3600]";

/// `--name value` pairs; anything else is an error.
fn flags(args: &[String], known: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Err(String::new());
        }
        let name = arg
            .strip_prefix("--")
            .filter(|n| known.contains(n))
            .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.insert(name.to_string(), value.clone());
    }
    Ok(out)
}

fn jwt(args: &[String]) -> Result<(), String> {
    let f = flags(
        args,
        &[
            "secret",
            "workspace",
            "audience",
            "brand",
            "sub",
            "ttl-secs",
        ],
    )?;
    let secret = f.get("secret").ok_or("--secret is required")?;
    let workspace = f.get("workspace").ok_or("--workspace is required")?;
    let sub = f.get("sub").map(String::as_str).unwrap_or("user-1");
    let ttl: i64 = match f.get("ttl-secs") {
        Some(t) => t.parse().map_err(|_| "--ttl-secs must be a number")?,
        None => 3600,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = serde_json::json!({
        "sub": sub,
        "workspaces": [workspace],
        "iat": now,
        "exp": now + ttl,
    });
    if let Some(aud) = f.get("audience") {
        claims["aud"] = serde_json::json!(aud);
    }
    if let Some(brand) = f.get("brand") {
        claims["brands"] = serde_json::json!([brand]);
    }
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("signing the JWT: {e}"))?;
    println!("{token}");
    Ok(())
}

fn serve(args: &[String]) -> Result<(), String> {
    let f = flags(args, &["listen", "client-id", "client-secret"])?;
    let listen: SocketAddr = f
        .get("listen")
        .map(String::as_str)
        .unwrap_or("127.0.0.1:8081")
        .parse()
        .map_err(|_| "--listen must be an address like 127.0.0.1:8081")?;
    if !listen.ip().is_loopback() {
        return Err("--listen must be a loopback address: this fake is for local use".into());
    }
    let client_id = f.get("client-id").map(String::as_str).unwrap_or("demo");
    let client_secret = f
        .get("client-secret")
        .map(String::as_str)
        .unwrap_or("demo_app_secret");
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("binding {listen}: {e}"))?;
        let fake = FakeShopify::start_on(listener, client_id, client_secret);
        eprintln!(
            "fake Shopify listening on http://{} (client id {client_id:?}); \
             point the gateway's --shopify-admin-base-url and \
             --shopify-authorize-base-url at {}",
            fake.addr,
            fake.base_url_template()
        );
        tokio::select! {
            _ = fake.serve_forever() => Err("the fake stopped serving".to_string()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("jwt") => jwt(&args[1..]),
        _ => serve(&args),
    };
    if let Err(e) = result {
        if e.is_empty() {
            println!("{USAGE}");
            return;
        }
        eprintln!("fake-shopify: {e}\n{USAGE}");
        std::process::exit(2);
    }
}
