//! Does a `v1a` entry of the signature header carry an Ed25519 signature,
//! by one of the connection's `whpk_` public keys, of what Standard Webhooks
//! signs (`{id}.{timestamp}.{body}`)?
//!
//! The check is `ring`'s (already built for TLS and the JWTs), which refuses
//! a key or signature of the wrong length, a key that is no curve point and
//! a non-canonical signature with an error, never a panic. Nothing here is
//! secret: a public key and a signature say nothing an attacker may not
//! know, so there is nothing to compare in constant time; every key is
//! still tried against every entry, with no early exit, as on the HMAC
//! path, so the time taken does not say which key of a rotation matched.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

/// What starts a public key among a connection's secrets.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// What starts an asymmetric entry of the signature header.
const ENTRY_PREFIX: &str = "v1a,";

/// At most this many `v1a` entries are tried from one header: a sender
/// rotating its key sends two, and each try is a whole Ed25519 verification
/// (tens of microseconds, where a further HMAC candidate is a comparison),
/// so a hostile header must not buy more.
const MAX_ENTRIES: usize = 4;

/// Whether a configured secret is a public key (verifies `v1a` entries)
/// rather than a `whsec_` secret (verifies `v1` entries).
pub(super) fn is_public_key(secret: &[u8]) -> bool {
    secret
        .trim_ascii()
        .starts_with(PUBLIC_KEY_PREFIX.as_bytes())
}

/// The 32 bytes of a `whpk_` key (base64, padded or not, as `whsec_`
/// secrets are read); `None` for anything else, which then matches nothing.
pub(super) fn public_key(secret: &[u8]) -> Option<[u8; 32]> {
    let b64 = secret
        .trim_ascii()
        .strip_prefix(PUBLIC_KEY_PREFIX.as_bytes())?;
    let bytes = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .ok()?;
    bytes.try_into().ok()
}

/// The signatures of the header's `v1a` entries (space-separated, read as
/// the `v1` ones are); other versions, bad base64 and wrong lengths are
/// skipped.
fn signatures(header: &str) -> Vec<[u8; 64]> {
    header
        .split(' ')
        .filter_map(|entry| entry.trim().strip_prefix(ENTRY_PREFIX).map(str::trim))
        .take(MAX_ENTRIES)
        .filter_map(|sig| STANDARD.decode(sig).ok()?.try_into().ok())
        .collect()
}

/// Whether a `v1a` entry of `header` is the signature of `signed` (the
/// signed bytes in parts) by a `whpk_` key among `secrets`.
pub(super) fn matches(header: &str, signed: &[&[u8]], secrets: &[&[u8]]) -> bool {
    let keys: Vec<[u8; 32]> = secrets.iter().filter_map(|s| public_key(s)).collect();
    let signatures = signatures(header);
    // Which of these are empty is known to the sender: skipping the work
    // (and the copy of the body) then says nothing.
    if keys.is_empty() || signatures.is_empty() {
        return false;
    }
    let message = signed.concat();
    let mut ok = false;
    for key in &keys {
        let key = UnparsedPublicKey::new(&ED25519, key);
        for signature in &signatures {
            ok |= key.verify(&message, signature).is_ok();
        }
    }
    ok
}

/// A sender's Ed25519 key pair, for tests, benches and fuzzing: the gateway
/// itself never signs webhooks.
pub struct Signer(Ed25519KeyPair);

impl Signer {
    /// The key pair of a 32-byte seed (what a sender's `whsk_` key holds).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Signer(Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are a seed"))
    }

    /// The `whpk_` key a connection is given.
    pub fn public_key(&self) -> String {
        format!(
            "{PUBLIC_KEY_PREFIX}{}",
            STANDARD.encode(self.0.public_key().as_ref())
        )
    }

    /// The `v1a,<base64>` entry a sender puts in the signature header.
    pub fn entry(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
        format!(
            "{ENTRY_PREFIX}{}",
            STANDARD.encode(self.0.sign(&signed).as_ref())
        )
    }
}
