//! The source of the frozen guest binaries in `tests/fixtures/guests/`
//! (how each was built: the README there).
//!
//! * topic `echo/input`: one `echo.input` event whose payload is every
//!   field of the input record, so a test sees what the host handed over;
//! * any other topic: exactly what `shopify-default` makes of it.

use ionflux_guest::{Event, Result, Webhook, serde_json, shopify};

pub fn transform(input: Webhook) -> Result<Event> {
    if input.topic != "echo/input" {
        return Ok(shopify::event(&input));
    }
    let headers: Vec<[&str; 2]> = input
        .headers
        .iter()
        .map(|h| [h.name.as_str(), h.value.as_str()])
        .collect();
    let payload = serde_json::json!({
        "world": "0.2.0",
        "provider": input.provider,
        "topic": input.topic,
        "account_id": input.account_id,
        "workspace_id": input.workspace_id,
        "brand_id": input.brand_id,
        "api_version": input.api_version,
        "delivery_id": input.delivery_id,
        "occurred_at": input.occurred_at,
        "event_id": shopify::event_id(&input),
        "headers": headers,
        "body": String::from_utf8_lossy(&input.body),
    });
    Event::new("echo.input")
        .schema_version("v1.echo")
        .json(&payload)
}

ionflux_guest::export_transform!(transform);
