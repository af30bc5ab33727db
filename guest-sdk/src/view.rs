//! What every provider's typed views share: tolerant field readers and
//! parsing a body straight into a view.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::Error;

/// A missing field and an explicit `null` mean the same to a reader.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An id sent as a JSON string by one endpoint and as a number by another
/// (TikTok Shop does both): always its text, `""` when absent or `null`.
pub(crate) fn id_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Option::<Id>::deserialize(deserializer)? {
        None => String::new(),
        Some(Id::Text(s)) => s,
        Some(Id::Unsigned(n)) => n.to_string(),
        Some(Id::Signed(n)) => n.to_string(),
    })
}

/// A Unix time sent as a number or as its decimal text.
pub(crate) fn unix_time<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Time {
        Number(i64),
        Text(String),
    }
    Ok(match Option::<Time>::deserialize(deserializer)? {
        None => None,
        Some(Time::Number(n)) => Some(n),
        Some(Time::Text(s)) => s.trim().parse().ok(),
    })
}

/// Parses straight from the bytes (no intermediate `Value`). Only a JSON
/// object is a view's input: serde's derived structs would also take an
/// array, fields by position, which a webhook body never means. Errors
/// are [`Error::InvalidInput`], naming `what`.
pub(crate) fn from_body<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Error> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(Error::invalid_input(format!(
            "not a {what}: the body is not a JSON object"
        )));
    }
    serde_json::from_slice(body).map_err(|e| Error::invalid_input(format!("not a {what}: {e}")))
}
