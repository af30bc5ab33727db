//! DESIGN §6b, "the browser that started an OAuth install may finish that
//! install, and never another user's": the attacks are made against a real
//! gateway, with the fake Shopify's authorize page sending each browser back
//! to the callback as Shopify does.
//!
//! - An install is bound to the browser that started it (a signed state
//!   cookie): a user of workspace A who hands initiate's authorize URL to a
//!   merchant cannot make the merchant's shop join workspace A.
//! - A brand belongs to one workspace: a user of workspace A cannot connect
//!   (and so cannot read the shop details of) a brand that workspace B
//!   connected, nor a brand their token's brand claims do not name.

use ionflux_gateway::providers::shopify::oauth::{self, STATE_COOKIE};
use ionflux_gateway::support::vault::Secret;
use ionflux_tests::fake_shopify::{FakeShopify, JWT_AUDIENCE, app_config, state_cookie};
use ionflux_tests::{Gateway, Options, free_loopback_addr};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const CLIENT_ID: &str = "binding-client-id";
const CLIENT_SECRET: &str = "shpss_binding_client_secret";
const JWT_SECRET: &str = "binding-user-service-secret";
const SERVICE_TOKEN: &str = "svc_binding_shop_details";

struct Env {
    gw: Gateway,
    fake: FakeShopify,
}

/// A gateway whose callback is reachable at its real address, so that the
/// fake's authorize page can send browsers back to it.
async fn env() -> Env {
    let fake = FakeShopify::start(CLIENT_ID, CLIENT_SECRET).await;
    let listen = free_loopback_addr();
    let base = format!("http://{listen}");
    let mut cfg = app_config(&fake, (CLIENT_ID, CLIENT_SECRET), &base, JWT_SECRET);
    cfg.authorize_base_url = fake.base_url_template();
    // Registration is not what these tests are about.
    cfg.webhook_topics = Vec::new();
    let gw = Gateway::start(Options {
        shopify: Some(cfg),
        listen: Some(listen),
        service_token: Some(SERVICE_TOKEN.into()),
        ..Options::default()
    })
    .await;
    Env { gw, fake }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn jwt(claims: Value) -> String {
    let now = ionflux_gateway::store::now_ms() / 1000;
    let mut claims = claims;
    claims["aud"] = json!(JWT_AUDIENCE);
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 600);
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A browser: one cookie jar, and a client that follows redirects and one
/// that stops at the first answer (to read a redirect's URL).
struct Browser {
    follow: reqwest::Client,
    stay: reqwest::Client,
}

fn browser() -> Browser {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = |policy| {
        reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(policy)
            .build()
            .unwrap()
    };
    Browser {
        follow: client(reqwest::redirect::Policy::limited(5)),
        stay: client(reqwest::redirect::Policy::none()),
    }
}

/// Initiate in `client` (which keeps what it sets) without following the
/// redirect: (status, the authorize URL, the Set-Cookie pair, body).
async fn initiate(
    env: &Env,
    client: &reqwest::Client,
    token: &str,
    ws: &str,
    brand: &str,
    shop: &str,
) -> (u16, Option<String>, Option<String>, Value) {
    let resp = client
        .get(env.gw.url(oauth::INITIATE_PATH))
        .query(&[("workspace_id", ws), ("brand_id", brand), ("shop", shop)])
        .bearer_auth(token)
        .send()
        .await
        .expect("initiate sent");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let cookie = state_cookie(resp.headers());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, location, cookie, body)
}

/// `client` opens `url` and follows the redirects: (the URL it ended at,
/// status, body).
async fn open(client: &reqwest::Client, url: &str) -> (String, u16, Value) {
    let resp = client.get(url).send().await.expect("request sent");
    let at = resp.url().to_string();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (at, status, body)
}

/// The fake's authorize page, answered without following: the signed
/// callback URL Shopify would send the merchant's browser to.
async fn approve(authorize_url: &str) -> String {
    let resp = browser().stay.get(authorize_url).send().await.unwrap();
    assert_eq!(resp.status(), 302, "the fake approves");
    resp.headers()["location"].to_str().unwrap().to_string()
}

async fn exchanges(env: &Env) -> usize {
    env.fake
        .calls()
        .iter()
        .filter(|c| c.path == "/admin/oauth/access_token")
        .count()
}

fn state_of(callback_url: &str) -> String {
    reqwest::Url::parse(callback_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("the callback carries the state")
}

/// A user of workspace A starts an install and hands the authorize URL to a
/// merchant, whose browser approves and lands on the callback: refused, the
/// state spent, nothing connected; replaying the merchant's callback with A's
/// cookie is refused too, as are another install's cookie, an unsigned
/// cookie and tampered ones. The same steps in A's own browser connect.
#[tokio::test]
async fn an_install_finishes_only_in_the_browser_that_started_it() {
    let env = env().await;
    let (ws_a, brand) = (uuid(), uuid());
    let shop = "merchant.myshopify.com";
    let token_a = jwt(json!({"sub": "attacker", "workspaces": [ws_a]}));

    // The attacker starts the install in their browser, which keeps the
    // cookie.
    let attacker = browser();
    let (status, authorize, cookie, body) =
        initiate(&env, &attacker.stay, &token_a, &ws_a, &brand, shop).await;
    assert_eq!(status, 302, "{body}");
    let cookie = cookie.expect("initiate sets the state cookie");
    assert!(cookie.starts_with(&format!("{STATE_COOKIE}=")));

    // The merchant's browser (a jar of its own, empty) opens the URL,
    // approves at the fake and lands on the callback.
    let merchant = browser();
    let (callback_url, status, body) = open(&merchant.follow, &authorize.unwrap()).await;
    assert!(
        callback_url.contains(oauth::CALLBACK_PATH),
        "{callback_url}"
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("state_cookie_missing")),
        "{body}"
    );
    // The attacker gets the merchant's callback URL (from the address bar)
    // and replays it in the browser that started the install: the state was
    // spent by the merchant's refused callback.
    let (_, status, body) = open(&attacker.follow, &callback_url).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("state_used")),
        "{body}"
    );

    // The merchant's browser holds a state cookie of its own (an install it
    // started itself): a genuine cookie, for another state.
    let ws_m = uuid();
    let token_m = jwt(json!({"sub": "merchant", "workspaces": [ws_m]}));
    let (status, _, merchant_cookie, _) =
        initiate(&env, &merchant.stay, &token_m, &ws_m, &uuid(), shop).await;
    assert_eq!(status, 302);
    let merchant_cookie = merchant_cookie.unwrap();
    let (status, authorize, _, _) =
        initiate(&env, &attacker.stay, &token_a, &ws_a, &brand, shop).await;
    assert_eq!(status, 302);
    let (_, status, body) = open(&merchant.follow, &authorize.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("state_mismatch")),
        "{body}"
    );

    // Forged cookies, sent by hand, for a fresh state each (a refused
    // callback spends its state): the bare state, unsigned; the state under
    // another cookie's signature; the genuine cookie with its signature
    // altered.
    let value = |pair: &str| pair[STATE_COOKIE.len() + 1..].to_string();
    let other_signature = {
        let v = value(&merchant_cookie);
        v[..v.len() - 43].to_string()
    };
    type Forge = fn(&str, &str, &str) -> String;
    let forgeries: [(&str, Forge); 3] = [
        ("unsigned", |state, _, _| state.to_string()),
        ("another cookie's signature", |state, _, other| {
            format!("{other}{state}")
        }),
        ("altered signature", |state, genuine, _| {
            let signature = genuine.strip_suffix(state).unwrap();
            let flipped = if signature.starts_with('A') { "B" } else { "A" };
            format!("{flipped}{}{state}", &signature[1..])
        }),
    ];
    for (name, forge) in forgeries {
        let (status, authorize, genuine, _) =
            initiate(&env, &browser().stay, &token_a, &ws_a, &brand, shop).await;
        assert_eq!(status, 302);
        let genuine = value(&genuine.unwrap());
        let callback_url = approve(&authorize.unwrap()).await;
        let state = state_of(&callback_url);
        let forged = forge(&state, &genuine, &other_signature);
        assert_ne!(forged, genuine, "{name}");
        let resp = reqwest::Client::new()
            .get(&callback_url)
            .header("cookie", format!("{STATE_COOKIE}={forged}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("state_mismatch")),
            "{name}: {body}"
        );
    }
    assert!(env.gw.store().list_connections().await.unwrap().is_empty());
    assert_eq!(exchanges(&env).await, 0, "no code was exchanged");

    // The install done in one browser, start to finish, connects.
    let user = browser();
    let resp = user
        .follow
        .get(env.gw.url(oauth::INITIATE_PATH))
        .query(&[
            ("workspace_id", ws_a.as_str()),
            ("brand_id", &brand),
            ("shop", shop),
        ])
        .bearer_auth(&token_a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.url().path(), oauth::CALLBACK_PATH);
    let status = resp.status().as_u16();
    let connected: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{connected}");
    assert_eq!(connected["workspace_id"], ws_a.as_str());
    assert_eq!(env.gw.store().list_connections().await.unwrap().len(), 1);
    env.gw.stop().await;
}

/// Installs (ws, brand, shop) in one browser, start to finish.
async fn install(env: &Env, token: &str, ws: &str, brand: &str, shop: &str) -> Value {
    let user = browser();
    let (status, authorize, _, body) = initiate(env, &user.stay, token, ws, brand, shop).await;
    assert_eq!(status, 302, "{body}");
    let callback_url = approve(&authorize.unwrap()).await;
    let (_, status, body) = open(&user.follow, &callback_url).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn shop_details(env: &Env, brand: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(env.gw.url(&format!(
            "/integrations/shopify/brands/{brand}/shop-details"
        )))
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Workspace B connected a brand; a user of workspace A names that brand at
/// initiate (with a token that says nothing about brands), or finishes an
/// install started before B connected it: refused. A token whose brand
/// claims do not name the brand is refused. Shop details of B's brand stay
/// B's shop, even with a connection of A's under that brand in the store.
#[tokio::test]
async fn a_brand_connected_in_another_workspace_cannot_be_joined_or_read() {
    let env = env().await;
    let (ws_a, ws_b, brand) = (uuid(), uuid(), uuid());
    let token_a = jwt(json!({"sub": "user-a", "workspaces": [ws_a]}));
    let token_b = jwt(json!({"sub": "user-b", "workspaces": [ws_b]}));

    // A starts an install of B's brand before B connects it (the brand is
    // free then), and keeps the authorize URL.
    let early = browser();
    let (status, early_authorize, _, body) = initiate(
        &env,
        &early.stay,
        &token_a,
        &ws_a,
        &brand,
        "attacker-early.myshopify.com",
    )
    .await;
    assert_eq!(status, 302, "{body}");

    let c = install(&env, &token_b, &ws_b, &brand, "brand-b.myshopify.com").await;
    assert_eq!(c["workspace_id"], ws_b.as_str());

    // Now A names B's brand.
    let (status, _, cookie, body) = initiate(
        &env,
        &browser().stay,
        &token_a,
        &ws_a,
        &brand,
        "attacker.myshopify.com",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("brand_in_another_workspace")),
        "{body}"
    );
    assert!(cookie.is_none(), "no state was issued");
    // The install A started earlier cannot finish either.
    let callback_url = approve(&early_authorize.unwrap()).await;
    let (_, status, body) = open(&early.follow, &callback_url).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("brand_in_another_workspace")),
        "{body}"
    );

    // Brand claims: a token that names other brands only (in each of the
    // claim's spellings), or none at all, is refused for this brand.
    let other = uuid();
    let fresh = uuid();
    for (name, claims) in [
        (
            "brands",
            json!({"sub": "a", "workspaces": [ws_a], "brands": [other]}),
        ),
        (
            "brand_ids",
            json!({"sub": "a", "workspaces": [ws_a], "brand_ids": [other]}),
        ),
        (
            "brand_id",
            json!({"sub": "a", "workspaces": [ws_a], "brand_id": other}),
        ),
        (
            "empty",
            json!({"sub": "a", "workspaces": [ws_a], "brands": []}),
        ),
    ] {
        let (status, _, _, body) = initiate(
            &env,
            &browser().stay,
            &jwt(claims),
            &ws_a,
            &fresh,
            "claims.myshopify.com",
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{name}: {body}"
        );
    }
    // ...and let in when they name it.
    let naming = jwt(json!({"sub": "a", "workspaces": [ws_a], "brand_ids": [other, fresh]}));
    let (status, _, _, body) = initiate(
        &env,
        &browser().stay,
        &naming,
        &ws_a,
        &fresh,
        "claims.myshopify.com",
    )
    .await;
    assert_eq!(status, 302, "{body}");
    // Brand claims never override the store: B's brand stays B's.
    let claiming = jwt(json!({"sub": "a", "workspaces": [ws_a], "brands": [brand]}));
    let (status, _, _, body) = initiate(
        &env,
        &browser().stay,
        &claiming,
        &ws_a,
        &brand,
        "attacker.myshopify.com",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("brand_in_another_workspace")),
        "{body}"
    );

    // Only B's connection holds the brand, and its shop is what services get.
    let conns = env.gw.store().list_connections().await.unwrap();
    assert_eq!(conns.len(), 1, "{conns:?}");
    let (status, body) = shop_details(&env, &brand).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shop_domain"], "brand-b.myshopify.com");

    // A connection of A's under B's brand, newer than B's (made before
    // installs checked brands, or by hand): shop details still answer B's.
    ionflux_gateway::providers::shopify::add_connection(
        env.gw.store(),
        &env.gw.vault,
        "attacker-legacy.myshopify.com",
        &ws_a,
        &brand,
        &Secret::from("shpss_legacy".to_string()),
    )
    .await
    .unwrap();
    let (status, body) = shop_details(&env, &brand).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["shop_domain"], "brand-b.myshopify.com", "{body}");
    assert_eq!(body["connection_id"], c["connection_id"]);
    let resp = reqwest::Client::new()
        .get(env.gw.url(&format!(
            "/integrations/shopify/brands/{brand}/shop-details?shop=attacker-legacy.myshopify.com"
        )))
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_connected")),
        "{body}"
    );
    env.gw.stop().await;
}
