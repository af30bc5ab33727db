//! The `PlatformEvent` envelope (DESIGN §2) and the Kafka records that carry
//! it. Everything here is a pure function of the stored inbox row and the
//! transform's output, so a retry rebuilds exactly the same record.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::pipeline::publish::Record;
use crate::store::{DeadLetter, InboxRow};

/// The `source_service_name` of Shopify's events (seed 000); every
/// provider's follows the same rule, see [`source_service_name`].
pub const SOURCE_SERVICE_NAME: &str = "ShopifyIntegrationService";
pub const DEFAULT_TOPIC_TEMPLATE: &str = "ionflux.{provider}.ws_{workspace_id}.events_raw";
pub const DEFAULT_DLQ_TEMPLATE: &str = "ionflux.{provider}.ws_{workspace_id}.dlq";

/// Topic names come from templates with `{provider}`, `{workspace_id}` and
/// `{brand_id}`. The host alone fills them, from the connection, so a
/// transform can never publish into another tenant's topics.
#[derive(Debug, Clone)]
pub struct Topics {
    pub events: String,
    pub dead_letters: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            events: DEFAULT_TOPIC_TEMPLATE.into(),
            dead_letters: DEFAULT_DLQ_TEMPLATE.into(),
        }
    }
}

impl Topics {
    pub fn events_for(&self, row: &InboxRow) -> String {
        fill(&self.events, row)
    }

    pub fn dead_letters_for(&self, row: &InboxRow) -> String {
        fill(&self.dead_letters, row)
    }
}

fn fill(template: &str, row: &InboxRow) -> String {
    template
        .replace("{provider}", &row.provider)
        .replace("{workspace_id}", &row.workspace_id)
        .replace("{brand_id}", &row.brand_id)
}

/// A UUIDv7 whose time is the receive time and whose "random" bits are a hash
/// of (connection, webhook id, index): every retry of the same webhook yields
/// the same id, so consumers can drop duplicates, and ids still sort by time.
pub fn event_id(row: &InboxRow, index: usize) -> Uuid {
    event_id_of(&row.connection_id, &row.webhook_id, row.received_at, index)
}

/// [`event_id`] from the parts of the row it depends on: what a lookup of a
/// stored webhook has without its body.
pub fn event_id_of(connection_id: &str, webhook_id: &str, received_at: i64, index: usize) -> Uuid {
    let mut h = Sha256::new();
    h.update(connection_id.as_bytes());
    h.update([0]);
    h.update(webhook_id.as_bytes());
    h.update([0]);
    h.update((index as u64).to_be_bytes());
    let digest = h.finalize();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(received_at.max(0) as u64, &bits).into_uuid()
}

/// The index of a row's dead-letter record in [`event_id`]: apart from any
/// fan-out event of the row.
pub const DEAD_LETTER_INDEX: usize = u32::MAX as usize;

/// `{Provider}IntegrationService`, the provider's id in upper camel case:
/// `shopify` → `ShopifyIntegrationService`, `tiktok_shop` →
/// `TiktokShopIntegrationService`. A rule rather than a list, so a new
/// provider needs no line here.
pub fn source_service_name(provider: &str) -> String {
    let mut name = String::with_capacity(provider.len() + 18);
    for word in provider.split(['_', '-']).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name.push_str("IntegrationService");
    name
}

/// When the platform says the event happened (`X-Shopify-Triggered-At`, a
/// TikTok envelope's `timestamp`, …) when it parses, else the receive time;
/// RFC 3339 UTC.
pub fn event_timestamp(row: &InboxRow) -> String {
    row.occurred_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| millis_to_utc(row.received_at))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn millis_to_utc(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Which transform produced an event, for the metadata.
#[derive(Debug, Clone, Serialize)]
pub struct TransformId<'a> {
    pub name: &'a str,
    pub digest: &'a str,
}

#[derive(Serialize)]
struct PlatformEvent<'a> {
    event_id: Uuid,
    event_type: String,
    event_timestamp: String,
    source_service_name: String,
    workspace_id: &'a str,
    brand_id: &'a str,
    payload_schema_version: &'a str,
    payload_json: &'a RawValue,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    provider: &'a str,
    topic: &'a str,
    /// The account the webhook speaks for: shop domain, site, seller.
    account: &'a str,
    webhook_id: &'a str,
    /// The platform's own event id, when it has one apart from the delivery.
    platform_event_id: Option<&'a str>,
    /// Shopify's names for `account` and `platform_event_id`, which its
    /// consumers read before there was a second platform: kept on Shopify's
    /// events only.
    #[serde(skip_serializing_if = "Option::is_none")]
    shop_domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shopify_event_id: Option<Option<&'a str>>,
    api_version: Option<&'a str>,
    transform: &'a str,
    transform_digest: &'a str,
    received_at: String,
    inbox_id: i64,
    trace_id: &'a str,
}

/// What a transform decided for one event, already validated: `kind` is a
/// dotted suffix. `payload` should be one JSON object; the envelope checks.
pub struct EventParts<'a> {
    pub kind: &'a str,
    pub schema_version: &'a str,
    pub payload: &'a [u8],
}

/// Wraps one transform event in the envelope and makes its Kafka record.
pub fn platform_record(
    row: &InboxRow,
    topics: &Topics,
    transform: &TransformId<'_>,
    index: usize,
    parts: &EventParts<'_>,
) -> Result<Record, serde_json::Error> {
    let event_id = event_id(row, index);
    let event_type = format!(
        "ionflux.{}.ws_{}.brand_{}.{}",
        row.provider, row.workspace_id, row.brand_id, parts.kind
    );
    // The one parse of a passed-through body (output validation leaves it
    // to this): it must be one JSON object to be enveloped.
    let payload_json: &RawValue = serde_json::from_slice(parts.payload).map_err(|e| {
        serde::de::Error::custom(format_args!("the payload is not valid JSON: {e}"))
    })?;
    if !payload_json.get().starts_with('{') {
        return Err(serde::de::Error::custom(
            "the payload is JSON but not an object",
        ));
    }
    // Compared, not named elsewhere: the pipeline knows no platform, but
    // keeps the envelope Shopify's consumers already read (see `Metadata`).
    let shopify = row.provider == "shopify";
    let envelope = PlatformEvent {
        event_id,
        event_type,
        event_timestamp: event_timestamp(row),
        source_service_name: source_service_name(&row.provider),
        workspace_id: &row.workspace_id,
        brand_id: &row.brand_id,
        payload_schema_version: parts.schema_version,
        payload_json,
        metadata: Metadata {
            provider: &row.provider,
            topic: &row.topic,
            account: &row.account,
            webhook_id: &row.webhook_id,
            platform_event_id: row.event_id.as_deref(),
            shop_domain: shopify.then_some(row.account.as_str()),
            shopify_event_id: shopify.then_some(row.event_id.as_deref()),
            api_version: row.api_version.as_deref(),
            transform: transform.name,
            transform_digest: transform.digest,
            received_at: millis_to_utc(row.received_at)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            inbox_id: row.id,
            trace_id: &row.trace_id,
        },
    };
    let payload = serde_json::to_vec(&envelope)?;
    let mut headers = vec![
        ("event_id".into(), event_id.to_string()),
        ("event_type".into(), envelope.event_type.clone()),
        (
            "payload_schema_version".into(),
            parts.schema_version.to_string(),
        ),
        ("workspace_id".into(), row.workspace_id.clone()),
        ("brand_id".into(), row.brand_id.clone()),
        ("trace_id".into(), row.trace_id.clone()),
    ];
    headers.extend(cloudevent_headers(
        row,
        event_id,
        envelope.event_type,
        envelope.event_timestamp,
    ));
    headers.extend(trace_headers(row, event_id));
    Ok(Record {
        event_id,
        topic: topics.events_for(row),
        key: row.brand_id.clone(),
        headers,
        payload,
    })
}

/// The CloudEvents 1.0 attributes of a PlatformEvent, as the Kafka protocol
/// binding's binary mode carries them: `ce_`-prefixed headers beside the
/// value, which stays the PlatformEvent itself (the event's `data`), and
/// `content-type` for `datacontenttype`. Each attribute is one of the
/// event's own fields, so a CloudEvents consumer and a PlatformEvent
/// consumer read the same thing. `ce_source` is `/{provider}/{shop}`, the
/// shop the webhook came from (percent-encoded). No `ce_subject`: the
/// resource an event is about lives in its payload, which the host does not
/// interpret.
fn cloudevent_headers(
    row: &InboxRow,
    event_id: Uuid,
    event_type: String,
    event_timestamp: String,
) -> [(String, String); 6] {
    [
        ("ce_specversion".into(), "1.0".into()),
        ("ce_id".into(), event_id.to_string()),
        ("ce_source".into(), cloudevent_source(row)),
        ("ce_type".into(), event_type),
        ("ce_time".into(), event_timestamp),
        (CONTENT_TYPE.into(), JSON.into()),
    ]
}

const CONTENT_TYPE: &str = "content-type";
const JSON: &str = "application/json";

/// A path segment may not hold `/`, `?`, `#` or `%` unescaped; neither
/// controls, spaces nor non-ASCII are URI characters at all.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The CloudEvents `source` of a row's events: a URI reference naming the
/// provider and the shop, e.g. `/shopify/acme.myshopify.com`.
pub fn cloudevent_source(row: &InboxRow) -> String {
    use percent_encoding::utf8_percent_encode as enc;
    format!(
        "/{}/{}",
        enc(&row.provider, SEGMENT),
        enc(&row.account, SEGMENT)
    )
}

/// The record's W3C trace context. Built here as a stand-in from the row's
/// `trace_id` (so it exists, and is the same on a retry, whatever the
/// telemetry); the dispatcher and the Kafka sink replace it with the
/// exported span that really is the record's parent, when there is one.
fn trace_headers(row: &InboxRow, event_id: Uuid) -> Option<(String, String)> {
    crate::support::telemetry::stand_in_traceparent(&row.trace_id, &event_id)
        .map(|parent| (crate::pipeline::publish::TRACEPARENT.to_owned(), parent))
}

/// At most how many bytes one event's record holds beyond its payload: the
/// envelope's fixed fields and names, the longest kind and schema version a
/// transform may give (in the event type, the envelope and the headers),
/// and the row's own strings, each of which may appear in several places
/// (the workspace id up to six times, with the CloudEvents headers) and
/// grow when escaped (six bytes for one in JSON, three in a URI). A bound
/// for the dispatcher's memory budget, not an exact size.
pub fn envelope_overhead(row: &InboxRow) -> usize {
    const FIXED: usize = 3072;
    const TIMES: usize = 12;
    let strings = [
        row.provider.len(),
        row.workspace_id.len(),
        row.brand_id.len(),
        row.topic.len(),
        row.account.len(),
        row.webhook_id.len(),
        row.event_id.as_deref().map_or(0, str::len),
        row.api_version.as_deref().map_or(0, str::len),
        row.trace_id.len(),
    ];
    FIXED.saturating_add(
        strings
            .iter()
            .fold(0usize, |sum, n| sum.saturating_add(n.saturating_mul(TIMES))),
    )
}

/// The records for everything one transform call emitted, in order. An
/// `Unchanged` payload is the stored body itself, never a copy of it.
pub fn platform_records(
    row: &InboxRow,
    topics: &Topics,
    transform: &TransformId<'_>,
    events: &[crate::pipeline::transform::Event],
) -> Result<Vec<Record>, (usize, serde_json::Error)> {
    events
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let payload = match &e.payload {
                crate::pipeline::transform::Payload::Unchanged => row.body.as_slice(),
                crate::pipeline::transform::Payload::Json(bytes) => bytes.as_slice(),
            };
            let parts = EventParts {
                kind: &e.kind,
                schema_version: &e.schema_version,
                payload,
            };
            platform_record(row, topics, transform, index, &parts).map_err(|err| (index, err))
        })
        .collect()
}

#[derive(Serialize)]
struct DeadLetterEnvelope<'a> {
    event_id: Uuid,
    inbox_id: i64,
    connection_id: &'a str,
    workspace_id: &'a str,
    brand_id: &'a str,
    provider: &'a str,
    topic: &'a str,
    account: &'a str,
    webhook_id: &'a str,
    reason_code: &'a str,
    reason: &'a str,
    transform: Option<&'a str>,
    transform_digest: Option<&'a str>,
    received_at: String,
    headers: &'a [(String, String)],
    /// The body as text when it is UTF-8 (the usual case), else base64, so
    /// that an operator can always see and replay exactly what arrived.
    body: String,
    body_encoding: &'static str,
}

/// The dead-letter topic's record for a webhook that cannot become an event.
pub fn dead_letter_record(row: &InboxRow, topics: &Topics, letter: &DeadLetter) -> Record {
    use base64::Engine as _;
    let event_id = event_id(row, DEAD_LETTER_INDEX);
    let (body, body_encoding) = match std::str::from_utf8(&row.body) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&row.body),
            "base64",
        ),
    };
    let envelope = DeadLetterEnvelope {
        event_id,
        inbox_id: row.id,
        connection_id: &row.connection_id,
        workspace_id: &row.workspace_id,
        brand_id: &row.brand_id,
        provider: &row.provider,
        topic: &row.topic,
        account: &row.account,
        webhook_id: &row.webhook_id,
        reason_code: &letter.reason_code,
        reason: &letter.reason,
        transform: letter.transform.as_deref(),
        transform_digest: letter.transform_digest.as_deref(),
        received_at: millis_to_utc(row.received_at).to_rfc3339_opts(SecondsFormat::Millis, true),
        headers: &row.headers,
        body,
        body_encoding,
    };
    Record {
        event_id,
        topic: topics.dead_letters_for(row),
        key: row.brand_id.clone(),
        // Not a CloudEvent: a dead letter is a report about a webhook for
        // an operator, not an event of the shop. It keeps its trace, so the
        // failure can be found from it.
        headers: [
            ("event_id".into(), event_id.to_string()),
            ("reason_code".into(), letter.reason_code.clone()),
            ("workspace_id".into(), row.workspace_id.clone()),
            ("trace_id".into(), row.trace_id.clone()),
            (CONTENT_TYPE.into(), JSON.into()),
        ]
        .into_iter()
        .chain(trace_headers(row, event_id))
        .collect(),
        payload: serde_json::to_vec(&envelope).expect("dead letter serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> InboxRow {
        InboxRow {
            id: 7,
            connection_id: "c1".into(),
            provider: "shopify".into(),
            workspace_id: "w1".into(),
            brand_id: "b1".into(),
            webhook_id: "wh-1".into(),
            topic: "orders/create".into(),
            account: "s.myshopify.com".into(),
            api_version: Some("2024-01".into()),
            occurred_at: Some("2024-01-02T03:04:05.678+01:00".into()),
            event_id: None,
            trace_id: "t".into(),
            headers: vec![],
            body: br#"{"id": 12345678901234567890}"#.to_vec(),
            received_at: 1_700_000_000_000,
            attempts: 1,
        }
    }

    #[test]
    fn event_ids_are_stable_v7_and_distinct_per_index() {
        let r = row();
        assert_eq!(event_id(&r, 0), event_id(&r, 0));
        assert_ne!(event_id(&r, 0), event_id(&r, 1));
        assert_eq!(event_id(&r, 0).get_version_num(), 7);
        let mut other = r.clone();
        other.webhook_id = "wh-2".into();
        assert_ne!(event_id(&r, 0), event_id(&other, 0));
    }

    #[test]
    fn timestamp_prefers_a_valid_occurred_at() {
        let mut r = row();
        assert_eq!(event_timestamp(&r), "2024-01-02T02:04:05.678Z");
        r.occurred_at = Some("yesterday".into());
        assert_eq!(event_timestamp(&r), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn only_a_json_object_is_enveloped() {
        let r = row();
        let id = TransformId {
            name: "shopify-default",
            digest: "abc",
        };
        for (payload, why) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[1]", "not an object"),
            (b" \"x\"", "not an object"),
            (b"{} {}", "not valid JSON"),
        ] {
            let parts = EventParts {
                kind: "orders.created",
                schema_version: "v1",
                payload,
            };
            let err = platform_record(&r, &Topics::default(), &id, 0, &parts).unwrap_err();
            assert!(err.to_string().contains(why), "{payload:?}: {err}");
        }
        // Whitespace around an object is still one JSON object.
        let parts = EventParts {
            kind: "orders.created",
            schema_version: "v1",
            payload: b" \n{\"a\":1}\n",
        };
        assert!(platform_record(&r, &Topics::default(), &id, 0, &parts).is_ok());
    }

    #[test]
    fn the_envelope_overhead_bounds_a_records_size_beyond_its_payload() {
        let mut r = row();
        r.workspace_id = uuid::Uuid::new_v4().to_string();
        r.brand_id = uuid::Uuid::new_v4().to_string();
        r.webhook_id = "w\"\\".repeat(20);
        r.trace_id = "0af7651916cd43dd8448eb211c80319c".into();
        // Escaped in the envelope and percent-encoded in `ce_source`.
        r.account = "\u{1}é/".repeat(10);
        let kind = format!("a.{}", "b".repeat(126));
        let version = "v".repeat(64);
        let digest = "d".repeat(64);
        let rec = platform_record(
            &r,
            &Topics::default(),
            &TransformId {
                name: &"n".repeat(64),
                digest: &digest,
            },
            0,
            &EventParts {
                kind: &kind,
                schema_version: &version,
                payload: b"{}",
            },
        )
        .unwrap();
        let held = rec.payload.len()
            + rec.topic.len()
            + rec.key.len()
            + rec
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        assert!(
            held - 2 <= envelope_overhead(&r),
            "{held} bytes held, bound {}",
            envelope_overhead(&r)
        );
    }

    #[test]
    fn envelope_keeps_payload_bytes_exactly() {
        let r = row();
        let rec = platform_record(
            &r,
            &Topics::default(),
            &TransformId {
                name: "shopify-default",
                digest: "abc",
            },
            0,
            &EventParts {
                kind: "orders.created",
                schema_version: "v1.shopify.2024-01",
                payload: &r.body,
            },
        )
        .unwrap();
        assert_eq!(rec.topic, "ionflux.shopify.ws_w1.events_raw");
        assert_eq!(rec.key, "b1");
        let text = String::from_utf8(rec.payload).unwrap();
        // A u64 beyond 2^53 survives because the payload is never re-parsed
        // into floating point.
        assert!(text.contains(r#""payload_json":{"id": 12345678901234567890}"#));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["event_type"],
            "ionflux.shopify.ws_w1.brand_b1.orders.created"
        );
        assert_eq!(v["source_service_name"], SOURCE_SERVICE_NAME);
        assert_eq!(v["metadata"]["transform"], "shopify-default");
    }

    #[test]
    fn every_provider_names_its_service_by_one_rule() {
        assert_eq!(source_service_name("shopify"), SOURCE_SERVICE_NAME);
        assert_eq!(
            source_service_name("tiktok_shop"),
            "TiktokShopIntegrationService"
        );
        assert_eq!(
            source_service_name("standard_webhooks"),
            "StandardWebhooksIntegrationService"
        );
        assert_eq!(source_service_name("hmac"), "HmacIntegrationService");
    }

    #[test]
    fn metadata_names_the_account_on_every_platform_and_keeps_shopifys_names_for_shopify() {
        let parts = EventParts {
            kind: "order.created",
            schema_version: "v1",
            payload: b"{}",
        };
        let id = TransformId {
            name: "t",
            digest: "",
        };
        let metadata = |r: &InboxRow| {
            let rec = platform_record(r, &Topics::default(), &id, 0, &parts).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&rec.payload).unwrap();
            v["metadata"].clone()
        };
        let mut r = row();
        r.event_id = Some("e-1".into());
        let m = metadata(&r);
        assert_eq!(m["account"], "s.myshopify.com");
        assert_eq!(m["shop_domain"], "s.myshopify.com");
        assert_eq!(m["platform_event_id"], "e-1");
        assert_eq!(m["shopify_event_id"], "e-1");
        r.provider = "woocommerce".into();
        r.account = "https://shop.example/".into();
        let m = metadata(&r);
        assert_eq!(m["account"], "https://shop.example/");
        assert_eq!(m["platform_event_id"], "e-1");
        assert!(m.get("shop_domain").is_none() && m.get("shopify_event_id").is_none());
    }
}
