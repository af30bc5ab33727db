//! What a guest is allowed to return. Pure functions, no wasmtime here.

use serde_json::value::RawValue;

use super::{Event, Limits, Payload, TransformError};

const MAX_KIND_BYTES: usize = 128;
const MAX_SCHEMA_VERSION_BYTES: usize = 64;

/// Checks the events a guest returned for one webhook, cheapest checks
/// first so that a hostile output costs as little as possible.
///
/// An `Unchanged` payload is the webhook's body, which is not the guest's
/// to vouch for: the envelope checks it where it parses it anyway
/// (`event::platform_record`), so a pass-through costs one parse, not two.
pub(crate) fn validate(events: Vec<Event>, limits: &Limits) -> Result<Vec<Event>, TransformError> {
    if events.len() > limits.max_events {
        return Err(TransformError::TooManyEvents {
            count: events.len(),
            limit: limits.max_events,
        });
    }

    let size = events.iter().map(produced_bytes).sum::<usize>();
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

/// Bytes the guest produced for this event. An `Unchanged` payload counts
/// nothing: it is the body the host already holds, not guest output.
fn produced_bytes(event: &Event) -> usize {
    let payload = match &event.payload {
        Payload::Unchanged => 0,
        Payload::Json(bytes) => bytes.len(),
    };
    event.kind.len() + event.schema_version.len() + payload
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
        assert_eq!(validate(ok.clone(), &limits).unwrap(), ok);
        assert!(matches!(
            validate(vec![event("a.b", "v1", Payload::Unchanged); 3], &limits),
            Err(TransformError::TooManyEvents { count: 3, limit: 2 })
        ));
        let big = Payload::Json(format!("{{\"a\":\"{}\"}}", "x".repeat(64)).into_bytes());
        assert!(matches!(
            validate(vec![event("a.b", "v1", big)], &limits),
            Err(TransformError::OutputTooLarge { limit: 64, .. })
        ));
        // A body passed through unchanged is not guest output, whatever its
        // size.
        assert!(validate(ok, &limits).is_ok());
    }
}
