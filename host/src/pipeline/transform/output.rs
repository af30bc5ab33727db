//! What a guest is allowed to return. Pure functions, no wasmtime here.

use serde_json::value::RawValue;

use super::{Event, Limits, Payload, TransformError};

const MAX_KIND_BYTES: usize = 128;
const MAX_SCHEMA_VERSION_BYTES: usize = 64;

/// Checks the events a guest returned for one webhook, whose body is
/// `body_len` bytes, cheapest checks first so that a hostile output costs
/// as little as possible.
///
/// An `Unchanged` payload is the webhook's body, which is not the guest's
/// to vouch for: the envelope checks it where it parses it anyway
/// (`event::platform_record`), so a pass-through costs one parse, not two.
pub(crate) fn validate(
    events: Vec<Event>,
    limits: &Limits,
    body_len: usize,
) -> Result<Vec<Event>, TransformError> {
    if events.len() > limits.max_events {
        return Err(TransformError::TooManyEvents {
            count: events.len(),
            limit: limits.max_events,
        });
    }

    let size = events.iter().fold(0usize, |sum, e| {
        sum.saturating_add(produced_bytes(e, body_len))
    });
    // One pass-through is free: the host holds the body already, so a
    // webhook larger than the budget can still be passed on as it came.
    let passes_through = events.iter().any(|e| e.payload == Payload::Unchanged);
    let size = size - if passes_through { body_len } else { 0 };
    if size > limits.output_bytes {
        return Err(TransformError::OutputTooLarge {
            size,
            limit: limits.output_bytes,
        });
    }

    for (index, event) in events.iter().enumerate() {
        check_kind(&event.kind).map_err(|why| invalid(index, why))?;
        check_schema_version(&event.schema_version).map_err(|why| invalid(index, why))?;
        if let Payload::Json(bytes) = &event.payload {
            check_json_object(bytes).map_err(|why| invalid(index, format!("payload: {why}")))?;
        }
    }
    Ok(events)
}

/// Bytes this event becomes. An `Unchanged` payload is cheap for the guest
/// to ask for but not for the host, which writes the body into every such
/// event's record: it counts the body's size, each time (but one, see
/// `validate`).
fn produced_bytes(event: &Event, body_len: usize) -> usize {
    let payload = match &event.payload {
        Payload::Unchanged => body_len,
        Payload::Json(bytes) => bytes.len(),
    };
    event.kind.len() + event.schema_version.len() + payload
}

/// The most bytes the events of one call on a body of `body_len` bytes
/// can come to: the budget plus the one free copy of the body.
pub(crate) fn output_bound(limits: &Limits, body_len: usize) -> usize {
    limits.output_bytes.saturating_add(body_len)
}

fn invalid(index: usize, why: String) -> TransformError {
    TransformError::InvalidOutput(format!("event {index}: {why}"))
}

/// `^[a-z0-9_]+(\.[a-z0-9_]+)+$`, at most 128 bytes: the suffix becomes part
/// of a Kafka event type, so it must not be able to smuggle separators or
/// escape the tenant prefix.
fn check_kind(kind: &str) -> Result<(), String> {
    if kind.len() > MAX_KIND_BYTES {
        return Err(format!(
            "kind is {} bytes, over the limit of {MAX_KIND_BYTES}",
            kind.len()
        ));
    }
    let segments = kind.split('.').collect::<Vec<_>>();
    let well_formed = segments.len() >= 2
        && segments.iter().all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "kind {:?} is not of the form `entity.action` ([a-z0-9_] segments joined by dots)",
            truncate_for_message(kind)
        ))
    }
}

/// `^[A-Za-z0-9._-]{1,64}$`
fn check_schema_version(version: &str) -> Result<(), String> {
    let well_formed = !version.is_empty()
        && version.len() <= MAX_SCHEMA_VERSION_BYTES
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "schema version {:?} must be 1 to {MAX_SCHEMA_VERSION_BYTES} of [A-Za-z0-9._-]",
            truncate_for_message(version)
        ))
    }
}

/// Exactly one JSON object, nothing before or after it (whitespace aside).
/// `RawValue` validates without building a tree.
fn check_json_object(bytes: &[u8]) -> Result<(), String> {
    let raw: &RawValue =
        serde_json::from_slice(bytes).map_err(|e| format!("is not valid JSON: {e}"))?;
    if raw.get().starts_with('{') {
        Ok(())
    } else {
        Err("is JSON but not an object".to_owned())
    }
}

/// Guest strings end up in dead-letter reasons; keep them short.
fn truncate_for_message(s: &str) -> &str {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, version: &str, payload: Payload) -> Event {
        Event {
            kind: kind.to_owned(),
            schema_version: version.to_owned(),
            payload,
        }
    }

    #[test]
    fn kinds() {
        for good in ["orders.created", "a.b.c", "x_1.y_2", "0.0"] {
            assert!(check_kind(good).is_ok(), "{good}");
        }
        let long = format!("a.{}", "b".repeat(127));
        for bad in [
            "orders",
            "",
            ".a",
            "a.",
            "a..b",
            "Orders.created",
            "a.b-c",
            "a.b ",
            "a/b.c",
            &long,
        ] {
            assert!(check_kind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_versions() {
        assert!(check_schema_version("v1.shopify.2024-01").is_ok());
        assert!(check_schema_version(&"a".repeat(64)).is_ok());
        for bad in ["", "v 1", "v1/2", "é", &"a".repeat(65)] {
            assert!(check_schema_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_objects() {
        assert!(check_json_object(b"{}").is_ok());
        assert!(check_json_object(b" \n{\"a\":[1,2]} \t").is_ok());
        for bad in [
            &b"[]"[..],
            b"1",
            b"\"s\"",
            b"{} {}",
            b"{",
            b"",
            b"null",
            b"\xff",
        ] {
            assert!(check_json_object(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_and_unchanged_payloads() {
        let limits = Limits {
            max_events: 2,
            output_bytes: 64,
            ..Limits::default()
        };
        let ok = vec![event("a.b", "v1", Payload::Unchanged); 2];
        assert_eq!(validate(ok.clone(), &limits, 10).unwrap(), ok);
        assert!(matches!(
            validate(vec![event("a.b", "v1", Payload::Unchanged); 3], &limits, 10),
            Err(TransformError::TooManyEvents { count: 3, limit: 2 })
        ));
        let big = Payload::Json(format!("{{\"a\":\"{}\"}}", "x".repeat(64)).into_bytes());
        assert!(matches!(
            validate(vec![event("a.b", "v1", big)], &limits, 10),
            Err(TransformError::OutputTooLarge { limit: 64, .. })
        ));
    }

    #[test]
    fn unchanged_payloads_count_the_body_each_time() {
        let limits = Limits {
            max_events: 1000,
            output_bytes: 1 << 20,
            ..Limits::default()
        };
        let body = 256 << 10;
        let copies = |n| vec![event("a.b", "v1", Payload::Unchanged); n];
        // One copy is free; four more of a 256 KiB body and their kinds are
        // over 1 MiB.
        assert!(validate(copies(4), &limits, body).is_ok());
        assert!(matches!(
            validate(copies(5), &limits, body),
            Err(TransformError::OutputTooLarge { limit, .. }) if limit == 1 << 20
        ));
        assert!(matches!(
            validate(copies(1000), &limits, body),
            Err(TransformError::OutputTooLarge { size, .. }) if size > 200 << 20
        ));
        // A body over the limit still passes through once, never twice.
        let large = 3 << 20;
        assert!(validate(copies(1), &limits, large).is_ok());
        assert!(matches!(
            validate(copies(2), &limits, large),
            Err(TransformError::OutputTooLarge { .. })
        ));
    }
}
