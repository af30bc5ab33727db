//! A deliberately hostile transform. The host's tests send it webhooks whose
//! topic picks the misbehaviour, and check that only that call fails:
//!
//! | topic | behaviour |
//! |---|---|
//! | `hostile/loop` | spins forever (CPU limit) |
//! | `hostile/grow` | allocates 1 MiB blocks forever (memory limit) |
//! | `hostile/trap` | panics, i.e. traps |
//! | `hostile/huge` | one event with a ~10 MiB JSON payload (output limit) |
//! | `hostile/flood` | 100 000 log lines, then a normal event (log rate limit) |
//! | `hostile/many` | 1000 small events (events-per-call limit) |
//! | `hostile/badkind` | one event of kind `"Not A Kind!"` (kind validation) |
//! | anything else | like `shopify-default`, unless the route's config says otherwise (below) |
//!
//! The route's config can turn ordinary topics hostile. The upload's smoke
//! call runs with `{}`, so a guest like this passes it and only misbehaves
//! once a route hands it these settings:
//!
//! | config | topic | behaviour |
//! |---|---|---|
//! | `"fan_out": N` | `orders/create` | N `unchanged` events: N copies of the body (output limit) |
//! | `"spin": true` | `orders/updated` | spins forever (CPU limit) |
//! | `"allocate": true` | `orders/paid` | allocates 1 MiB blocks forever (memory limit) |
//! | `"forge": "TEXT"` | any | logs TEXT; on `forge/fail` fails with it, on `forge/panic` panics with it (log forgery) |

use std::hint::black_box;

use ionflux_guest::{Error, Event, Result, Webhook, serde, shopify};

/// Size of the `hostile/huge` payload: far over the 1 MiB default output
/// limit, yet small enough to fit twice into 32 MiB of guest memory.
pub const HUGE_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;
pub const FLOOD_LINES: usize = 100_000;
pub const MANY_EVENTS: usize = 1000;

/// Route settings that make ordinary topics hostile; see the table above.
#[derive(serde::Deserialize, Default)]
#[serde(crate = "ionflux_guest::serde", default)]
pub struct Attack {
    pub fan_out: usize,
    pub spin: bool,
    pub allocate: bool,
    pub forge: Option<String>,
}

pub fn transform(input: Webhook) -> Result<Vec<Event>> {
    match input.topic.as_str() {
        "hostile/loop" => spin(),
        "hostile/grow" => grow(),
        "hostile/trap" => panic!("hostile trap"),
        "hostile/huge" => Ok(vec![huge()]),
        "hostile/flood" => {
            for i in 0..FLOOD_LINES {
                ionflux_guest::info!("flood line {i}");
            }
            Ok(vec![shopify::event(&input)])
        }
        "hostile/many" => Ok((0..MANY_EVENTS)
            .map(|i| Event::new("hostile.many").json_bytes(format!("{{\"i\":{i}}}")))
            .collect()),
        "hostile/badkind" => Ok(vec![Event::new("Not A Kind!")]),
        _ => configured(input),
    }
}

/// What the route's config asks for; with none, a well-behaved transform.
fn configured(input: Webhook) -> Result<Vec<Event>> {
    let attack: Attack = ionflux_guest::config()?;
    if let Some(text) = &attack.forge {
        ionflux_guest::warn!("{text}");
        match input.topic.as_str() {
            "forge/fail" => return Err(Error::failed(text)),
            "forge/panic" => panic!("{text}"),
            _ => {}
        }
    }
    match input.topic.as_str() {
        "orders/create" if attack.fan_out > 0 => {
            Ok(vec![Event::new("hostile.fan_out"); attack.fan_out])
        }
        "orders/updated" if attack.spin => spin(),
        "orders/paid" if attack.allocate => grow(),
        _ => Ok(vec![shopify::event(&input)]),
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimiser from proving the loop side-effect
        // free and deleting it (an empty infinite loop is UB-adjacent).
        n = black_box(n.wrapping_add(1));
    }
}

fn grow() -> ! {
    loop {
        // Touch every byte so the pages are really committed, and leak the
        // block so nothing can be reused.
        let block = black_box(vec![0xA5u8; 1 << 20]);
        std::mem::forget(block);
    }
}

fn huge() -> Event {
    let mut bytes = Vec::with_capacity(HUGE_PAYLOAD_BYTES + 16);
    bytes.extend_from_slice(br#"{"x":""#);
    bytes.resize(HUGE_PAYLOAD_BYTES, b'a');
    bytes.extend_from_slice(br#""}"#);
    Event::new("hostile.huge").json_bytes(bytes)
}

ionflux_guest::export_transform!(transform);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use ionflux_guest::{Payload, is_valid_kind, testing};

    use super::*;

    #[test]
    fn benign_behaviours() {
        let huge = transform(testing::webhook("hostile/huge", "{}")).unwrap();
        let Payload::Json(bytes) = &huge[0].payload else {
            panic!()
        };
        assert!(bytes.len() >= HUGE_PAYLOAD_BYTES);
        let v: ionflux_guest::serde_json::Value = serde_json_from(bytes);
        assert!(v["x"].is_string());

        assert_eq!(
            transform(testing::webhook("hostile/many", "{}"))
                .unwrap()
                .len(),
            MANY_EVENTS
        );
        let bad = transform(testing::webhook("hostile/badkind", "{}")).unwrap();
        assert!(!is_valid_kind(&bad[0].kind));

        testing::take_logs();
        let flood = transform(testing::webhook("hostile/flood", "{}")).unwrap();
        assert_eq!(testing::take_logs().len(), FLOOD_LINES);
        assert_eq!(flood[0].kind, "hostile.flood");

        let other = transform(testing::webhook("orders/create", "{}")).unwrap();
        assert_eq!(other[0].kind, "orders.created");
    }

    #[test]
    fn the_route_config_turns_ordinary_topics_hostile() {
        let fan_out = testing::with_config(r#"{"fan_out": 3}"#, || {
            transform(testing::webhook("orders/create", "{}"))
        })
        .unwrap();
        assert_eq!(fan_out.len(), 3);
        assert!(fan_out.iter().all(|e| e.payload == Payload::Unchanged));
        let failed = testing::with_config(r#"{"forge": "a\nb"}"#, || {
            transform(testing::webhook("forge/fail", "{}"))
        });
        assert!(failed.unwrap_err().to_string().contains("a\nb"));
    }

    fn serde_json_from(bytes: &[u8]) -> ionflux_guest::serde_json::Value {
        ionflux_guest::serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    #[should_panic(expected = "hostile trap")]
    fn trap_panics() {
        let _ = transform(testing::webhook("hostile/trap", "{}"));
    }
}
