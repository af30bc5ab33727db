//! Shadow runs: does a candidate transform behave like the one in
//! production? Both run on the same webhook; only the primary publishes.
//! Outputs are compared as JSON values (so key order does not count as a
//! difference), and failures compare by their reason code.

use serde_json::{Value, json};

use crate::pipeline::transform::{Event, Payload, Transform, TransformError};
use crate::store::{InboxRow, ShadowRun};

/// Longest output kept in a sample, per side.
const SAMPLE_MAX: usize = 64 * 1024;

pub fn compare(
    row: &InboxRow,
    primary: &Transform,
    primary_result: &Result<Vec<Event>, TransformError>,
    shadow: &Transform,
    shadow_result: &Result<Vec<Event>, TransformError>,
) -> ShadowRun {
    let (a, b) = (
        summarise(row, primary_result),
        summarise(row, shadow_result),
    );
    ShadowRun {
        primary_transform: primary.digest().to_string(),
        shadow_transform: shadow.digest().to_string(),
        inbox_id: row.id,
        topic: row.topic.clone(),
        difference: (a != b).then(|| (clip(a.to_string()), clip(b.to_string()))),
    }
}

fn summarise(row: &InboxRow, result: &Result<Vec<Event>, TransformError>) -> Value {
    match result {
        Ok(events) => Value::Array(
            events
                .iter()
                .map(|e| {
                    let bytes = match &e.payload {
                        Payload::Unchanged => row.body.as_slice(),
                        Payload::Json(b) => b.as_slice(),
                    };
                    json!({
                        "kind": e.kind,
                        "schema_version": e.schema_version,
                        "payload": serde_json::from_slice::<Value>(bytes).unwrap_or(Value::Null),
                    })
                })
                .collect(),
        ),
        Err(e) => json!({ "error": e.code() }),
    }
}

fn clip(mut s: String) -> String {
    if s.len() > SAMPLE_MAX {
        let mut cut = SAMPLE_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
