//! `events tail`: the embedded event log, one event per line.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use ionflux_gateway::store::{LoggedEvent, Store};

pub(crate) async fn tail_events(store: &Store, limit: i64, json: bool, follow: bool) -> Result<()> {
    let mut last = print_events(store.events_tail(limit.max(0)).await?, json)?;
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last = print_events(store.events_after(last, 1000).await?, json)?.max(last);
    }
}

/// Prints events and returns the last sequence number printed (0 if none).
pub(crate) fn print_events(events: Vec<LoggedEvent>, json: bool) -> Result<i64> {
    let mut last = 0;
    let mut out = std::io::stdout().lock();
    for e in events {
        last = e.seq;
        if json {
            writeln!(out, "{}", one_line(&e.payload))?;
        } else {
            let v: serde_json::Value = serde_json::from_str(&e.payload)?;
            writeln!(
                out,
                "#{} {} {} {}",
                e.seq,
                v["event_timestamp"].as_str().unwrap_or(""),
                v["event_type"].as_str().unwrap_or(""),
                v["event_id"].as_str().unwrap_or("")
            )?;
        }
    }
    out.flush()?;
    Ok(last)
}

/// An event as one line of JSON. A payload passed through unchanged keeps
/// the webhook body's own layout, line breaks included. JSON cannot hold a
/// raw line break inside a string, so every one (with the indentation after
/// it) is layout between tokens, and dropping it keeps the document.
fn one_line(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.contains(['\n', '\r']) {
        return json.into();
    }
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(i) = rest.find(['\n', '\r']) {
        out.push_str(&rest[..i]);
        rest = rest[i..].trim_start_matches(['\n', '\r', ' ', '\t']);
    }
    out.push_str(rest);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_keeps_the_document() {
        let body =
            "{\n  \"id\": 1,\r\n  \"note\": \"a  b\\nc\",\n\t\"l\": [\n    1,\n    2\n  ]\n}";
        let line = one_line(body);
        assert!(!line.contains(['\n', '\r']), "{line}");
        let a: serde_json::Value = serde_json::from_str(body).unwrap();
        let b: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(a, b);
        assert_eq!(one_line("{\"a\":1}"), "{\"a\":1}");
    }
}
