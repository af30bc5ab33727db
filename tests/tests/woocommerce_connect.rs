//! A WooCommerce site connected by its REST API keys: the gateway chooses
//! the secret, registers one webhook per topic at the site (the fake
//! WooCommerce plays its REST API), and the site's creation pings and
//! signed webhooks then reach it. Through the admin API and through the
//! real CLI binary (in both its modes); idempotent when run again; refused
//! keys and a failing site answer clear errors and keep the connection; no
//! key or secret in any answer, output or log line.
//!
//! The gateways here are intake-only (`dispatch = false`): what is asserted
//! is that the webhook was verified and stored, not its transform (the
//! WooCommerce default transform is another change's).

use ionflux_tests::Run;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use ionflux_gateway::pipeline::connection;
use ionflux_gateway::pipeline::registration::ProviderOptions;
use ionflux_gateway::support::vault::Vault;
use ionflux_tests::fake_woocommerce::FakeWooCommerce;
use ionflux_tests::{Gateway, Options, admin_json, free_loopback_addr};
use reqwest::Method;
use serde_json::{Value, json};

const OPERATOR: &str = "woo-connect-operator-token";
const CK: &str = "ck_5f0a9e1d2c3b4a59687766554433221100aabbcc";
const CS: &str = "cs_9988776655443322110ffeeddccbbaa0099887766";
const TOPICS: usize = 13;

/// Every log line of this test process (one subscriber per process).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug,ionflux_gateway=trace")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        captured
    })
}

/// None of `secrets` in the logs so far, nor in `texts`.
fn assert_unseen(secrets: &[&str], texts: &[&str]) {
    let logs = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    assert!(!logs.is_empty(), "the logs were captured");
    for secret in secrets {
        assert!(!logs.contains(secret), "a secret in the logs");
        for text in texts {
            assert!(!text.contains(secret), "a secret in {text}");
        }
    }
}

/// An intake-only gateway whose public base URL is its own listener, that
/// takes plain-http WooCommerce sites (the fake), with an operator token.
async fn gateway_with(vault: Arc<Vault>) -> Gateway {
    logs();
    let listen = free_loopback_addr();
    let woo = ionflux_gateway::providers::woocommerce::registration::Options {
        allow_plain_http: true,
        ..Default::default()
    };
    Gateway::start_with_vault(
        Options {
            admin_token: Some(OPERATOR.into()),
            listen: Some(listen),
            public_base_url: Some(format!("http://{listen}")),
            provider_options: Some(ProviderOptions::new([(
                "woocommerce".to_string(),
                serde_json::to_value(woo).unwrap(),
            )])),
            dispatch: Some(false),
            ..Options::default()
        },
        vault,
    )
    .await
}

async fn gateway() -> Gateway {
    gateway_with(ionflux_tests::test_vault()).await
}

async fn site() -> FakeWooCommerce {
    let fake = FakeWooCommerce::start(CK, CS).await;
    fake.ping_on_create(true);
    fake
}

fn ids() -> (String, String) {
    (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    )
}

fn body(fake: &FakeWooCommerce, workspace: &str, brand: &str, cs: &str) -> Value {
    json!({
        "provider": "woocommerce",
        "account": fake.site_url(),
        "workspace_id": workspace,
        "brand_id": brand,
        "credentials": {"consumer_key": CK, "consumer_secret": cs},
    })
}

async fn add(gw: &Gateway, body: Value) -> (u16, Value) {
    admin_json(
        gw,
        Method::POST,
        "/admin/v1/connections",
        Some(OPERATOR),
        Some(body),
    )
    .await
}

/// The connection's current webhook secret, in the clear.
async fn current_secret(gw: &Gateway, connection_id: &str) -> String {
    let row = gw
        .store()
        .connection_by_id(connection_id)
        .await
        .unwrap()
        .expect("the connection");
    let secrets = connection::webhook_secrets(&gw.vault, &row).unwrap();
    String::from_utf8(secrets[0].expose().to_vec()).unwrap()
}

/// The fake holds one active webhook per topic at `address`, signed with
/// `secret`, and nothing else.
fn assert_registered(fake: &FakeWooCommerce, address: &str, secret: &str) {
    let hooks = fake.webhooks();
    assert_eq!(hooks.len(), TOPICS, "{hooks:#?}");
    let mut topics: Vec<&str> = hooks.iter().map(|w| w.topic.as_str()).collect();
    topics.sort();
    topics.dedup();
    assert_eq!(topics.len(), TOPICS, "one per topic");
    for w in &hooks {
        assert_eq!(w.delivery_url, address, "{w:?}");
        assert_eq!(w.secret, secret, "{w:?}");
        assert_eq!(w.status, "active", "{w:?}");
    }
}

/// Delivers an order webhook as the site does and checks it was stored.
async fn assert_delivery_is_stored(gw: &Gateway, fake: &FakeWooCommerce, connection_id: &str) {
    let before = gw.store().pending_count().await.unwrap();
    let (status, answer) = fake
        .deliver("order.created", br#"{"id":727,"status":"processing"}"#)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(gw.store().pending_count().await.unwrap(), before + 1);
    let row = gw
        .store()
        .inbox_row(before + 1)
        .await
        .unwrap()
        .expect("the stored webhook");
    assert_eq!(row.connection_id, connection_id);
    assert_eq!(row.provider, "woocommerce");
    assert_eq!(row.topic, "order.created");
}

#[tokio::test]
async fn a_site_connected_by_its_keys_gets_every_topic_registered_once() {
    let gw = gateway().await;
    let fake = site().await;
    let (workspace, brand) = ids();

    let (status, first) = add(&gw, body(&fake, &workspace, &brand, CS)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["created"], true);
    let id = first["connection_id"].as_str().unwrap().to_string();
    let address = first["webhook_url"].as_str().unwrap().to_string();
    assert!(address.starts_with(&gw.url("/integrations/woocommerce/webhooks/")));
    let registrations = first["registrations"].as_array().unwrap();
    assert_eq!(registrations.len(), TOPICS, "{first}");
    for r in registrations {
        assert_eq!(r["created"], true, "{r}");
        assert_eq!(r["status"], "active", "{r}");
        assert!(r["id"].as_str().is_some_and(|id| !id.is_empty()), "{r}");
    }
    let secret = current_secret(&gw, &id).await;
    assert_eq!(secret.len(), 64, "32 random bytes, hex");
    assert_registered(&fake, &address, &secret);

    // WooCommerce pinged each webhook as it made it: answered 200, stored
    // nothing.
    let pings = fake.pings();
    assert_eq!(pings.len(), TOPICS, "{pings:?}");
    assert!(pings.iter().all(|(_, status)| *status == 200), "{pings:?}");
    assert_eq!(gw.store().pending_count().await.unwrap(), 0);

    // The keys that worked are kept, encrypted, as the API credential.
    let kept = connection::api_credentials(gw.store(), &gw.vault, &id)
        .await
        .unwrap();
    assert_eq!(
        kept,
        Some(json!({"consumer_key": CK, "consumer_secret": CS}))
    );
    let (_, list) = admin_json(
        &gw,
        Method::GET,
        "/admin/v1/connections",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(list["connections"][0]["has_tokens"], true, "{list}");

    // Again: the same connection, its secret kept, nothing new at the site.
    let ids_before: Vec<u64> = fake.webhooks().iter().map(|w| w.id).collect();
    let (status, again) = add(&gw, body(&fake, &workspace, &brand, CS)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["connection_id"], id.as_str());
    let registrations = again["registrations"].as_array().unwrap();
    assert!(
        registrations.iter().all(|r| r["created"] == false),
        "{again}"
    );
    assert_eq!(current_secret(&gw, &id).await, secret);
    assert_registered(&fake, &address, &secret);
    let ids_after: Vec<u64> = fake.webhooks().iter().map(|w| w.id).collect();
    assert_eq!(ids_before, ids_after);

    // A secret of the operator's choosing replaces it, at the site too.
    let new_secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let mut rotate = body(&fake, &workspace, &brand, CS);
    rotate["webhook_secret"] = json!(new_secret);
    let (status, rotated) = add(&gw, rotate).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(current_secret(&gw, &id).await, new_secret);
    assert_registered(&fake, &address, new_secret);

    // The site's webhooks reach the gateway, verified and stored.
    assert_delivery_is_stored(&gw, &fake, &id).await;

    let answers = [first.to_string(), again.to_string(), rotated.to_string()];
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    assert_unseen(&[CS, &secret, new_secret], &answers);
    gw.stop().await;
}

#[tokio::test]
async fn refused_keys_and_a_failing_site_are_clear_errors_that_keep_the_connection() {
    let gw = gateway().await;
    let fake = site().await;
    let (workspace, brand) = ids();
    let wrong = "cs_not_the_right_consumer_secret_0000000000";

    let (status, refused) = add(&gw, body(&fake, &workspace, &brand, wrong)).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "registration_refused", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("refused the API keys"), "{message}");
    assert!(message.contains("is saved"), "{message}");
    assert!(fake.webhooks().is_empty());
    // Kept: the connection exists, without credentials.
    let connections = gw.store().list_connections().await.unwrap();
    assert_eq!(connections.len(), 1);
    let id = connections[0].id.clone();
    assert_eq!(
        connection::api_credentials(gw.store(), &gw.vault, &id)
            .await
            .unwrap(),
        None
    );

    fake.fail_next(500, 1);
    let (status, failed) = add(&gw, body(&fake, &workspace, &brand, CS)).await;
    assert_eq!(status, 502, "{failed}");
    assert_eq!(failed["code"], "registration_failed", "{failed}");

    // The retry completes it, with the secret the connection had.
    let secret = current_secret(&gw, &id).await;
    let (status, done) = add(&gw, body(&fake, &workspace, &brand, CS)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["connection_id"], id.as_str());
    assert_registered(&fake, done["webhook_url"].as_str().unwrap(), &secret);
    assert_eq!(gw.store().list_connections().await.unwrap().len(), 1);

    // Refused before anything is saved: no secret and no credentials,
    // credentials of a malformed shape, credentials for a platform whose
    // webhooks are set up in its dashboard.
    let (other_ws, other_brand) = ids();
    let mut no_secret = body(&fake, &other_ws, &other_brand, CS);
    no_secret.as_object_mut().unwrap().remove("credentials");
    let mut half = body(&fake, &other_ws, &other_brand, CS);
    half["credentials"] = json!({"consumer_key": CK});
    let mut not_object = body(&fake, &other_ws, &other_brand, CS);
    not_object["credentials"] = json!(format!("{CK}:{CS}"));
    let mut shopify = body(&fake, &other_ws, &other_brand, CS);
    shopify["provider"] = json!("shopify");
    shopify["account"] = json!("woo-connect.myshopify.com");
    let mut texts = vec![refused.to_string(), failed.to_string(), done.to_string()];
    for refused in [no_secret, half, not_object, shopify] {
        let (status, answer) = add(&gw, refused).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["code"], "bad_request", "{answer}");
        texts.push(answer.to_string());
    }
    assert_eq!(gw.store().list_connections().await.unwrap().len(), 1);

    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_unseen(&[CS, wrong, &secret], &texts);
    gw.stop().await;
}

/// The real binary with an empty environment but for `env`.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Run {
    ionflux_tests::run_cli(None, args, env).await
}

fn cli_args<'a>(fake_url: &'a str, workspace: &'a str, brand: &'a str) -> Vec<&'a str> {
    vec![
        "connections",
        "add",
        "--provider",
        "woocommerce",
        "--account",
        fake_url,
        "--workspace",
        workspace,
        "--brand",
        brand,
        "--consumer-key",
        CK,
    ]
}

fn one_line(run: &Run) -> Value {
    assert!(run.ok, "the command failed: {}", run.stderr);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[tokio::test]
async fn the_cli_connects_a_site_through_a_running_gateway() {
    let gw = gateway().await;
    let fake = site().await;
    let (workspace, brand) = ids();
    let site_url = fake.site_url();
    let args = cli_args(&site_url, &workspace, &brand);
    let admin_url = gw.admin_url("");
    let env = [
        ("IONFLUX_ADMIN_URL", admin_url.as_str()),
        ("IONFLUX_TOKEN", OPERATOR),
        ("IONFLUX_CONSUMER_SECRET", CS),
    ];

    let run = cli(&args, &env).await;
    let added = one_line(&run);
    let id = added["connection_id"].as_str().unwrap().to_string();
    assert_eq!(added["registrations"].as_array().unwrap().len(), TOPICS);
    let secret = current_secret(&gw, &id).await;
    assert_registered(&fake, added["webhook_url"].as_str().unwrap(), &secret);

    let again = cli(&args, &env).await;
    let again_line = one_line(&again);
    assert_eq!(again_line["created"], false);
    assert_registered(&fake, added["webhook_url"].as_str().unwrap(), &secret);

    // A wrong consumer secret, from a file this time: a clear failure.
    let wrong = "cs_wrong_from_a_file_11112222333344445555";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{wrong}\n")).unwrap();
    let mut with_file = args.clone();
    with_file.extend(["--consumer-secret-file", file.path().to_str().unwrap()]);
    let refused = cli(&with_file, &env[..2]).await;
    assert!(
        !refused.ok && refused.stdout.is_empty(),
        "{}",
        refused.stdout
    );
    assert!(
        refused.stderr.contains("registration_refused"),
        "{}",
        refused.stderr
    );

    // Without the consumer secret anywhere: refused before any call.
    let missing = cli(&args, &env[..2]).await;
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("IONFLUX_CONSUMER_SECRET"),
        "{}",
        missing.stderr
    );

    assert_delivery_is_stored(&gw, &fake, &id).await;
    assert_unseen(
        &[CS, wrong, &secret],
        &[
            &run.stdout,
            &run.stderr,
            &again.stdout,
            &again.stderr,
            &refused.stderr,
            &missing.stderr,
        ],
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_cli_connects_a_site_on_the_database_host() {
    let spec = format!("k1:{}", Vault::generate_key());
    let gw = gateway_with(Arc::new(Vault::from_spec(&spec).unwrap())).await;
    let fake = site().await;
    let (workspace, brand) = ids();
    let site_url = fake.site_url();
    let public = gw.url("");
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[woocommerce]\n# a fake site on loopback\nallow_plain_http = true\n",
    )
    .unwrap();
    let mut args = vec!["--config", config.path().to_str().unwrap()];
    args.extend(cli_args(&site_url, &workspace, &brand));
    args.extend(["--public-base-url", public.trim_end_matches('/')]);
    let env = [
        ("IONFLUX_DATABASE_URL", gw.database_url.as_str()),
        ("IONFLUX_MASTER_KEYS", spec.as_str()),
        ("IONFLUX_CONSUMER_SECRET", CS),
    ];

    let run = cli(&args, &env).await;
    let added = one_line(&run);
    let id = added["connection_id"].as_str().unwrap().to_string();
    assert_eq!(added["registrations"].as_array().unwrap().len(), TOPICS);
    let secret = current_secret(&gw, &id).await;
    let address = format!(
        "{}{}",
        public.trim_end_matches('/'),
        added["webhook_path"].as_str().unwrap()
    );
    assert_registered(&fake, &address, &secret);
    assert!(
        fake.pings().iter().all(|(_, status)| *status == 200),
        "{:?}",
        fake.pings()
    );

    let again = cli(&args, &env).await;
    assert_eq!(one_line(&again)["created"], false);
    assert_registered(&fake, &address, &secret);

    assert_delivery_is_stored(&gw, &fake, &id).await;
    assert_unseen(
        &[CS, &secret],
        &[&run.stdout, &run.stderr, &again.stdout, &again.stderr],
    );
    gw.stop().await;
}
