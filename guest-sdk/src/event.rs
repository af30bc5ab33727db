use serde::Serialize;

use crate::Error;

/// What an event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The webhook body as is. The host keeps its own copy and never copies
    /// it back out of the guest, so pass-through transforms should use this
    /// and not even parse the body.
    Unchanged,
    /// New bytes holding exactly one JSON object.
    Json(Vec<u8>),
}

/// One event to publish. Build it with [`Event::new`] and the chained
/// setters:
///
/// ```
/// use ionflux_guest::Event;
/// let e = Event::new("orders.created").schema_version("v1.shopify.2024-01").unchanged();
/// assert_eq!(e.kind, "orders.created");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Type suffix, e.g. `"orders.created"`: dot-separated segments of
    /// `[a-z0-9_]`, at least two. The host prefixes the tenant namespace and
    /// rejects anything else (see [`is_valid_kind`]).
    pub kind: String,
    /// e.g. `"v1.shopify.2024-01"`. Defaults to `"v1"`.
    pub schema_version: String,
    /// Defaults to [`Payload::Unchanged`].
    pub payload: Payload,
}

/// The schema version used when a transform does not set one; an empty
/// version would make consumers guess.
pub const DEFAULT_SCHEMA_VERSION: &str = "v1";

impl Event {
    /// A pass-through event of this kind with schema version `"v1"`.
    pub fn new(kind: impl Into<String>) -> Self {
        Event {
            kind: kind.into(),
            schema_version: DEFAULT_SCHEMA_VERSION.to_owned(),
            payload: Payload::Unchanged,
        }
    }

    pub fn schema_version(mut self, version: impl Into<String>) -> Self {
        self.schema_version = version.into();
        self
    }

    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Publish the webhook body untouched.
    pub fn unchanged(mut self) -> Self {
        self.payload = Payload::Unchanged;
        self
    }

    /// Serialise `value` as the payload. The host requires a JSON object, so
    /// anything else is refused here, where the author can still see why.
    /// Errors are [`Error::Failed`]: the output, not the input, is wrong.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let value = serde_json::to_value(value)
            .map_err(|e| Error::failed(format!("serialising payload: {e}")))?;
        if !value.is_object() {
            return Err(Error::failed("payload must be a JSON object"));
        }
        let bytes = serde_json::to_vec(&value)
            .map_err(|e| Error::failed(format!("serialising payload: {e}")))?;
        Ok(self.json_bytes(bytes))
    }

    /// Use already serialised JSON bytes as the payload, unchecked: the host
    /// validates them anyway, and re-parsing large payloads in the guest
    /// would cost fuel for nothing.
    pub fn json_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.payload = Payload::Json(bytes.into());
        self
    }

    /// The JSON payload bytes, `None` for [`Payload::Unchanged`].
    pub fn json_payload(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Json(b) => Some(b),
            Payload::Unchanged => None,
        }
    }

    /// The JSON payload parsed, `None` for [`Payload::Unchanged`]. Handy in
    /// tests.
    pub fn json_payload_value(&self) -> Option<serde_json::Result<serde_json::Value>> {
        self.json_payload().map(serde_json::from_slice)
    }
}

/// Whether `kind` is accepted by the host: `^[a-z0-9_]+(\.[a-z0-9_]+)+$`.
pub fn is_valid_kind(kind: &str) -> bool {
    let mut segments = 0;
    for segment in kind.split('.') {
        if segment.is_empty()
            || !segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return false;
        }
        segments += 1;
    }
    segments >= 2
}

/// What a transform function may return inside `Ok`: zero events filter the
/// webhook out, several fan out.
pub trait IntoEvents {
    fn into_events(self) -> Vec<Event>;
}

impl IntoEvents for Vec<Event> {
    fn into_events(self) -> Vec<Event> {
        self
    }
}

impl IntoEvents for Event {
    fn into_events(self) -> Vec<Event> {
        vec![self]
    }
}

impl IntoEvents for Option<Event> {
    fn into_events(self) -> Vec<Event> {
        self.into_iter().collect()
    }
}

impl<const N: usize> IntoEvents for [Event; N] {
    fn into_events(self) -> Vec<Event> {
        self.into()
    }
}

impl IntoEvents for () {
    fn into_events(self) -> Vec<Event> {
        Vec::new()
    }
}
