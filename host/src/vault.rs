//! Are secrets safe at rest? AES-256-GCM envelope for tokens and app secrets.
//!
//! Ciphertext format: `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`.
//! The key id lets master keys rotate: old rows keep decrypting with the key
//! they were written with while new writes use the active key. The AAD binds
//! every ciphertext to its row and purpose, so a value copied into another row
//! (or another column of the same row) fails to decrypt instead of silently
//! authenticating as someone else's secret.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};

const FORMAT: &str = "v1";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("master key configuration: {0}")]
    Config(String),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was written with key id {0:?}, which is not configured")]
    UnknownKey(String),
    #[error("ciphertext does not authenticate for this row and purpose")]
    Decrypt,
    #[error("reading master key file: {0}")]
    Io(#[from] std::io::Error),
}

/// A secret value. Debug and Display never show it, so it cannot leak into a
/// log line by accident; the bytes are zeroed on drop.
#[derive(Clone)]
pub struct Secret(SecretSlice<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    /// The only way to the bytes, so every use is easy to find in review.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s.into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What a ciphertext is bound to: the row it lives in and what it is for.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub purpose: &'a str,
    pub row_id: &'a str,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        // Length-prefixed so that ("a|b", "c") and ("a", "b|c") differ.
        let mut aad = Vec::with_capacity(16 + self.purpose.len() + self.row_id.len());
        aad.extend_from_slice(b"ionflux.vault.v1");
        for part in [self.purpose, self.row_id] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

/// The master keys, by id, and which one encrypts new values.
pub struct Vault {
    keys: HashMap<String, Aes256Gcm>,
    active: String,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("active", &self.active)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Vault {
    /// Parses `id:base64key` entries separated by commas or newlines. The last
    /// entry is the active key, so rotating means appending a line.
    pub fn from_spec(spec: &str) -> Result<Self, VaultError> {
        let mut keys = HashMap::new();
        let mut active = None;
        for entry in spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'))
        {
            let (id, b64) = entry
                .split_once(':')
                .ok_or_else(|| VaultError::Config("expected `key_id:base64key`".into()))?;
            let id = id.trim();
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(VaultError::Config(format!(
                    "key id {id:?} must be [A-Za-z0-9_-]+"
                )));
            }
            let raw = STANDARD
                .decode(b64.trim())
                .map_err(|_| VaultError::Config(format!("key {id:?} is not base64")))?;
            if raw.len() != 32 {
                return Err(VaultError::Config(format!(
                    "key {id:?} must be 32 bytes, got {}",
                    raw.len()
                )));
            }
            let cipher = Aes256Gcm::new_from_slice(&raw)
                .map_err(|_| VaultError::Config("bad key length".into()))?;
            keys.insert(id.to_string(), cipher);
            active = Some(id.to_string());
        }
        let active = active.ok_or_else(|| VaultError::Config("no master key given".into()))?;
        Ok(Self { keys, active })
    }

    /// Reads the key file, creating one with a fresh random key when it does
    /// not exist (the embedded single-box default). The file is made
    /// owner-only before the key is written to it.
    pub fn from_file_or_create(path: &Path) -> Result<(Self, bool), VaultError> {
        match std::fs::read_to_string(path) {
            Ok(spec) => Ok((Self::from_spec(&spec)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let spec = format!("k1:{}\n", Self::generate_key());
                write_private(path, spec.as_bytes())?;
                Ok((Self::from_spec(&spec)?, true))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A fresh random 256-bit key, base64.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    pub fn encrypt(&self, plaintext: &[u8], binding: Binding<'_>) -> String {
        let cipher = &self.keys[&self.active];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = binding.aad();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // AES-GCM encryption only fails for inputs beyond 64 GiB.
            .expect("AES-GCM encryption of a small secret cannot fail");
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{FORMAT}.{}.{}", self.active, URL_SAFE_NO_PAD.encode(blob))
    }

    pub fn decrypt(&self, ciphertext: &str, binding: Binding<'_>) -> Result<Secret, VaultError> {
        let mut parts = ciphertext.splitn(3, '.');
        let (Some(FORMAT), Some(key_id), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Malformed);
        };
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| VaultError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let aad = binding.aad();
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map(Secret::new)
            .map_err(|_| VaultError::Decrypt)
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::from_spec(&format!("k1:{}", Vault::generate_key())).unwrap()
    }

    const ROW_A: Binding<'static> = Binding {
        purpose: "webhook_secret",
        row_id: "a",
    };

    #[test]
    fn round_trips() {
        let v = vault();
        let ct = v.encrypt(b"shpss_secret", ROW_A);
        assert!(ct.starts_with("v1.k1."));
        assert_eq!(v.decrypt(&ct, ROW_A).unwrap().expose(), b"shpss_secret");
    }

    #[test]
    fn nonces_are_fresh() {
        let v = vault();
        assert_ne!(v.encrypt(b"x", ROW_A), v.encrypt(b"x", ROW_A));
    }

    #[test]
    fn ciphertext_copied_to_another_row_or_purpose_fails() {
        let v = vault();
        let ct = v.encrypt(b"token", ROW_A);
        let other_row = Binding {
            row_id: "b",
            ..ROW_A
        };
        let other_purpose = Binding {
            purpose: "access_token",
            ..ROW_A
        };
        assert!(matches!(
            v.decrypt(&ct, other_row),
            Err(VaultError::Decrypt)
        ));
        assert!(matches!(
            v.decrypt(&ct, other_purpose),
            Err(VaultError::Decrypt)
        ));
    }

    #[test]
    fn rotated_keys_still_decrypt_old_rows() {
        let old_key = Vault::generate_key();
        let old = Vault::from_spec(&format!("k1:{old_key}")).unwrap();
        let ct = old.encrypt(b"token", ROW_A);
        let rotated =
            Vault::from_spec(&format!("k1:{old_key}\nk2:{}", Vault::generate_key())).unwrap();
        assert_eq!(rotated.active_key_id(), "k2");
        assert_eq!(rotated.decrypt(&ct, ROW_A).unwrap().expose(), b"token");
        assert!(rotated.encrypt(b"x", ROW_A).starts_with("v1.k2."));
    }

    #[test]
    fn tampering_and_garbage_are_errors_not_panics() {
        let v = vault();
        let mut ct = v.encrypt(b"token", ROW_A);
        ct.push('A');
        assert!(v.decrypt(&ct, ROW_A).is_err());
        for junk in [
            "",
            "v1",
            "v1.k1",
            "v1.k1.",
            "v2.k1.AAAA",
            "v1.k9.AAAA",
            "v1.k1.!!",
        ] {
            assert!(v.decrypt(junk, ROW_A).is_err(), "{junk}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }

    #[test]
    fn bad_specs_are_rejected() {
        for spec in ["", "k1", "k1:notbase64!", "k1:AAAA", "bad id:AAAA"] {
            assert!(Vault::from_spec(spec).is_err(), "{spec}");
        }
    }
}
