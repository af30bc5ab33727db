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
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretSlice};

const FORMAT: &str = "v1";
const NONCE_LEN: usize = 12;
/// How often a vault read from a file looks whether the file changed (a
/// `stat`, and a read only when it did).
const RECHECK: Duration = Duration::from_secs(1);

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

/// The key set at one moment: ciphers by id, in the order they were given
/// (the last one is active). Only [`Keys::parse`] makes one, so a set is
/// never empty; Debug shows the ids, never a key.
pub struct Keys {
    ciphers: HashMap<String, Aes256Gcm>,
    order: Vec<String>,
}

impl Keys {
    /// Parses `id:base64key` entries separated by commas or newlines (`#`
    /// starts a comment line). The last entry is the active key, so rotating
    /// means appending a line.
    pub fn parse(spec: &str) -> Result<Self, VaultError> {
        parse_spec(spec)
    }

    /// Every key id, oldest first; the last one is active.
    pub fn ids(&self) -> &[String] {
        &self.order
    }

    fn active(&self) -> &str {
        self.order.last().expect("a key set is never empty")
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys").field("ids", &self.order).finish()
    }
}

/// Where the master keys come from. Three sources ship ([`InlineKeys`],
/// [`FileKeys`], [`CommandKeys`]); [`Vault::from_source`] builds a vault
/// from any of them, and another (a KMS SDK, say) is one more impl.
pub trait KeySource {
    /// Reads the keys now.
    fn load(&self) -> Result<Keys, VaultError>;

    /// Names the source for messages and logs. Never a key, nor a command
    /// line (which may carry a token).
    fn describe(&self) -> String;

    /// A key file the vault follows while it runs (re-read when it changes,
    /// see [`Vault`]). Sources without one are read once, at start.
    fn followed_file(&self) -> Option<&Path> {
        None
    }
}

/// Keys given as a value: `IONFLUX_MASTER_KEYS` (or `--master-keys`, or
/// `master_keys` in the config file). Fixed for the life of the process.
pub struct InlineKeys<'a> {
    spec: &'a str,
}

impl<'a> InlineKeys<'a> {
    pub fn new(spec: &'a str) -> Self {
        Self { spec }
    }
}

impl KeySource for InlineKeys<'_> {
    fn load(&self) -> Result<Keys, VaultError> {
        Keys::parse(self.spec)
    }

    fn describe(&self) -> String {
        "master_keys".into()
    }
}

/// Keys read from a key file in the [`Keys::parse`] format. The vault
/// follows the file, so a rotation by another process is taken up live.
pub struct FileKeys {
    path: PathBuf,
}

impl FileKeys {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl KeySource for FileKeys {
    fn load(&self) -> Result<Keys, VaultError> {
        read_key_file(&self.path)
    }

    fn describe(&self) -> String {
        format!("key file {}", self.path.display())
    }

    fn followed_file(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

fn read_key_file(path: &Path) -> Result<Keys, VaultError> {
    let spec = Zeroizing::new(std::fs::read_to_string(path)?);
    parse_spec(&spec)
}

/// Keys printed by an operator's command (run through `sh -c`), in the key
/// file's format. This is how a secrets manager stands behind the vault
/// without the gateway linking its SDK, as git's credential helpers do:
/// `vault kv get -field=keys secret/ionflux`, `op read op://…`, or a KMS
/// decrypting a wrapped key file at start. A failure reports the command's
/// exit status and the end of its standard error, never its output. Run
/// once, at start: rotating means restarting.
pub struct CommandKeys {
    command: String,
    timeout: Duration,
}

impl CommandKeys {
    /// The command, given [`KEY_COMMAND_TIMEOUT`] to answer.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            timeout: KEY_COMMAND_TIMEOUT,
        }
    }

    /// The same command, given `timeout` to answer instead.
    pub fn within(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }
}

impl KeySource for CommandKeys {
    fn load(&self) -> Result<Keys, VaultError> {
        let output = run_key_command(&self.command, self.timeout)?;
        let spec = std::str::from_utf8(&output).map_err(|_| {
            VaultError::Config("the master key command printed something that is not UTF-8".into())
        })?;
        parse_spec(spec).map_err(|e| match e {
            VaultError::Config(why) => {
                VaultError::Config(format!("the master key command's output: {why}"))
            }
            other => other,
        })
    }

    fn describe(&self) -> String {
        "master_key_command".into()
    }
}

/// Where a file-backed vault re-reads its keys from, and what the file looked
/// like when it last did.
struct KeyFile {
    path: PathBuf,
    seen: Mutex<FileSeen>,
}

struct FileSeen {
    checked: Instant,
    stamp: Option<FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }
}

/// The master keys, by id, and which one encrypts new values.
///
/// A vault read from a key file follows that file while the process runs:
/// at most once a second it looks whether the file changed, and at once
/// when it meets a ciphertext under a key id it does not know. New keys
/// (and a new active key) are taken up; keys that disappeared from the file
/// stay usable in this process until it restarts, so a running gateway never
/// loses the ability to read a row it could read before. A vault built from
/// another source (`IONFLUX_MASTER_KEYS`, a command) is fixed: rotating it
/// means restarting.
pub struct Vault {
    keys: RwLock<Keys>,
    file: Option<KeyFile>,
    source: String,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read().unwrap();
        f.debug_struct("Vault")
            .field("source", &self.source)
            .field("active", &keys.active())
            .field("keys", &keys.order.len())
            .field("file", &self.file.as_ref().map(|f| &f.path))
            .finish()
    }
}

/// How long a master key command may take: a secrets manager's CLI that
/// waits for a login prompt must fail the start, not hang it.
pub const KEY_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `command` with no input and answers its standard output (kept in a
/// buffer that is wiped when dropped).
fn run_key_command(command: &str, timeout: Duration) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let fail = |why: String| VaultError::Config(format!("master key command: {why}"));
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("could not start `sh`: {e}")))?;
    // Read both pipes while waiting: a command that fills one would
    // otherwise block and never exit.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut buf = Zeroizing::new(Vec::new());
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("no answer within {timeout:?}")));
            }
            Err(e) => return Err(fail(format!("waiting for it: {e}"))),
        }
    };
    let stderr = err.join().unwrap_or_default();
    let stdout = out
        .join()
        .map_err(|_| fail("reading its output failed".into()))?
        .map_err(|e| fail(format!("reading its output: {e}")))?;
    if !status.success() {
        // The end of its standard error says why; its output may hold keys
        // and is never shown.
        let stderr = String::from_utf8_lossy(&stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(fail(format!("{status}: {tail}")));
    }
    Ok(stdout)
}

/// Parses `id:base64key` entries separated by commas or newlines.
fn parse_spec(spec: &str) -> Result<Keys, VaultError> {
    let mut ciphers = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for entry in spec
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'))
    {
        let (id, b64) = entry
            .split_once(':')
            .ok_or_else(|| VaultError::Config("expected `key_id:base64key`".into()))?;
        let id = id.trim();
        if !valid_key_id(id) {
            return Err(VaultError::Config(format!(
                "key id {id:?} must be [A-Za-z0-9_-]+"
            )));
        }
        let raw = Zeroizing::new(
            STANDARD
                .decode(b64.trim())
                .map_err(|_| VaultError::Config(format!("key {id:?} is not base64")))?,
        );
        if raw.len() != 32 {
            return Err(VaultError::Config(format!(
                "key {id:?} must be 32 bytes, got {}",
                raw.len()
            )));
        }
        let cipher = Aes256Gcm::new_from_slice(&raw)
            .map_err(|_| VaultError::Config("bad key length".into()))?;
        // A repeated id: the later entry wins, and moves to its place.
        order.retain(|o| o != id);
        order.push(id.to_string());
        ciphers.insert(id.to_string(), cipher);
    }
    if order.is_empty() {
        return Err(VaultError::Config("no master key given".into()));
    }
    Ok(Keys { ciphers, order })
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Vault {
    /// Builds the vault from `source`; when the source names a key file,
    /// the vault follows it (see [`Vault`]).
    pub fn from_source(source: &dyn KeySource) -> Result<Self, VaultError> {
        // The file's stamp is taken before it is read: a change in between
        // then shows as a change at the next look, never as none.
        let file = match source.followed_file() {
            Some(path) => Some(KeyFile {
                path: path.to_path_buf(),
                seen: Mutex::new(FileSeen {
                    checked: Instant::now(),
                    stamp: Some(FileStamp::of(path)?),
                }),
            }),
            None => None,
        };
        Ok(Self {
            keys: RwLock::new(source.load()?),
            file,
            source: source.describe(),
        })
    }

    /// [`InlineKeys`]: `id:base64key` entries separated by commas or
    /// newlines, the last one active.
    pub fn from_spec(spec: &str) -> Result<Self, VaultError> {
        Self::from_source(&InlineKeys::new(spec))
    }

    /// [`FileKeys`]: reads an existing key file and follows it.
    pub fn from_file(path: &Path) -> Result<Self, VaultError> {
        Self::from_source(&FileKeys::new(path))
    }

    /// Reads the key file, creating one with a fresh random key when it does
    /// not exist (the embedded single-box default). The file is made
    /// owner-only before the key is written to it.
    pub fn from_file_or_create(path: &Path) -> Result<(Self, bool), VaultError> {
        match Self::from_file(path) {
            Ok(vault) => Ok((vault, false)),
            Err(VaultError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let spec = Zeroizing::new(format!("k1:{}\n", Self::generate_key()));
                match write_private(path, spec.as_bytes()) {
                    Ok(()) => {}
                    // Someone else created it first: theirs is the key.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Ok((Self::from_file(path)?, false));
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok((Self::from_file(path)?, true))
            }
            Err(e) => Err(e),
        }
    }

    /// A fresh random 256-bit key, base64.
    pub fn generate_key() -> String {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        STANDARD.encode(key.as_ref())
    }

    /// Adds a freshly generated key to the key file at `path` and makes it
    /// the active one (the last line); every key already there is kept, so
    /// rows written under them still decrypt. Returns the new key's id, never
    /// the key.
    ///
    /// The file is replaced atomically (a private temporary file beside it,
    /// fsync'd, renamed over it, and the folder fsync'd), so a crash leaves
    /// the old file or the new one, never a torn one; an exclusive lock on
    /// `<path>.lock` keeps two rotations from losing each other's key.
    pub fn append_new_key(path: &Path) -> Result<String, VaultError> {
        let _lock = lock_beside(path)?;
        let existing = Zeroizing::new(std::fs::read_to_string(path)?);
        let keys = parse_spec(&existing)?;
        let id = next_key_id(&keys.order);
        let mut contents = Zeroizing::new(String::with_capacity(existing.len() + 64));
        contents.push_str(&existing);
        if !contents.is_empty() && !contents.ends_with('\n') {
            contents.push('\n');
        }
        contents.push_str(&id);
        contents.push(':');
        contents.push_str(&Self::generate_key());
        contents.push('\n');
        let check = parse_spec(&contents)?;
        debug_assert_eq!(check.active(), id);
        replace_private(path, contents.as_bytes())?;
        Ok(id)
    }

    /// The id of the key that encrypts new values.
    pub fn active_key_id(&self) -> String {
        self.refresh(false);
        self.keys.read().unwrap().active().to_string()
    }

    /// Every configured key id, oldest first; the last one is active.
    pub fn key_ids(&self) -> Vec<String> {
        self.refresh(false);
        self.keys.read().unwrap().order.clone()
    }

    /// The key id a ciphertext was written with, when it is well formed
    /// enough to say.
    pub fn key_id_of(ciphertext: &str) -> Option<&str> {
        let mut parts = ciphertext.splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(FORMAT), Some(id), Some(_)) if valid_key_id(id) => Some(id),
            _ => None,
        }
    }

    /// Where the keys came from ([`KeySource::describe`]).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file this vault follows, if any.
    pub fn key_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// Re-reads the key file now if it changed. True when the keys changed.
    /// A vault without a file has nothing to reload.
    pub fn reload(&self) -> Result<bool, VaultError> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let mut seen = file.seen.lock().unwrap();
        seen.checked = Instant::now();
        let stamp = FileStamp::of(&file.path)?;
        if seen.stamp.as_ref() == Some(&stamp) {
            return Ok(false);
        }
        let fresh = read_key_file(&file.path)?;
        let mut keys = self.keys.write().unwrap();
        let before = keys.order.clone();
        // Keys no longer in the file stay known (before the file's keys, so
        // that the file's last key is active).
        let mut order: Vec<String> = keys
            .order
            .iter()
            .filter(|id| !fresh.ciphers.contains_key(*id))
            .cloned()
            .collect();
        order.extend(fresh.order.iter().cloned());
        let mut ciphers = std::mem::take(&mut keys.ciphers);
        ciphers.extend(fresh.ciphers);
        *keys = Keys { ciphers, order };
        seen.stamp = Some(stamp);
        let changed = keys.order != before;
        if changed {
            tracing::info!(
                path = %file.path.display(),
                active = keys.active(),
                keys = keys.order.len(),
                "master keys reloaded"
            );
        }
        Ok(changed)
    }

    /// Follows the key file: when `force`, or when the last look is older
    /// than [`RECHECK`]. A file that cannot be read or parsed leaves the keys
    /// as they were (and is logged, without its contents).
    fn refresh(&self, force: bool) {
        let Some(file) = &self.file else {
            return;
        };
        if !force {
            let seen = file.seen.lock().unwrap();
            if seen.checked.elapsed() < RECHECK {
                return;
            }
        }
        // Error messages name key ids and lengths, never key bytes.
        if let Err(error) = self.reload() {
            tracing::warn!(
                path = %file.path.display(),
                %error,
                "master key file not reloaded; keeping the keys in use"
            );
        }
    }

    pub fn encrypt(&self, plaintext: &[u8], binding: Binding<'_>) -> String {
        self.refresh(false);
        let keys = self.keys.read().unwrap();
        let active = keys.active();
        let cipher = &keys.ciphers[active];
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
        format!("{FORMAT}.{active}.{}", URL_SAFE_NO_PAD.encode(blob))
    }

    pub fn decrypt(&self, ciphertext: &str, binding: Binding<'_>) -> Result<Secret, VaultError> {
        let mut parts = ciphertext.splitn(3, '.');
        let (Some(FORMAT), Some(key_id), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Malformed);
        };
        self.refresh(false);
        if self.file.is_some() && !self.keys.read().unwrap().ciphers.contains_key(key_id) {
            // Written under a key added since we last looked (another
            // process rotated and re-encrypted): look again now.
            self.refresh(true);
        }
        let keys = self.keys.read().unwrap();
        let cipher = keys
            .ciphers
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

/// `k<N+1>` after the highest `k<N>` in use (or after the number of keys,
/// when the ids are named otherwise); never an id already present.
fn next_key_id(ids: &[String]) -> String {
    let highest = ids
        .iter()
        .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        .max(ids.len() as u64);
    let mut n = highest + 1;
    loop {
        let id = format!("k{n}");
        if !ids.contains(&id) {
            return id;
        }
        n += 1;
    }
}

fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = private_options().open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Replaces `path` with `contents` atomically: an owner-only temporary file
/// in the same folder, fsync'd, renamed over `path`, then the folder fsync'd
/// so the rename itself survives a crash.
fn replace_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the key file path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{:016x}", rand::rng().next_u64()));
    let tmp = dir.join(tmp_name);
    let written = write_private(&tmp, contents).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

/// An exclusive lock on `<path>.lock`, held until the returned file drops.
fn lock_beside(path: &Path) -> std::io::Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(lock_path)?;
    file.lock()?;
    Ok(file)
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

    fn key_file(dir: &Path) -> PathBuf {
        let path = dir.join("ionflux.key");
        let (_, created) = Vault::from_file_or_create(&path).unwrap();
        assert!(created);
        path
    }

    #[test]
    fn append_new_key_keeps_old_keys_and_activates_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path());
        let before = std::fs::read_to_string(&path).unwrap();
        let old = Vault::from_file(&path).unwrap();
        let ct = old.encrypt(b"token", ROW_A);

        let id = Vault::append_new_key(&path).unwrap();
        assert_eq!(id, "k2");
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after.starts_with(&before),
            "old lines are kept as they were"
        );
        assert_eq!(after.lines().count(), 2);
        let rotated = Vault::from_file(&path).unwrap();
        assert_eq!(rotated.key_ids(), ["k1", "k2"]);
        assert_eq!(rotated.active_key_id(), "k2");
        assert_eq!(rotated.decrypt(&ct, ROW_A).unwrap().expose(), b"token");
        assert!(rotated.encrypt(b"x", ROW_A).starts_with("v1.k2."));
        // Nothing but the key file and its lock is left behind.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ionflux.key", "ionflux.key.lock"]);
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        // Even when the file had been loosened by hand, the rewrite is 0600.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Vault::append_new_key(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn appended_ids_are_unique_even_when_rotations_race() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path());
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Vault::append_new_key(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 8, "{ids:?}");
        let vault = Vault::from_file(&path).unwrap();
        let all = vault.key_ids();
        assert_eq!(all.len(), 9, "no rotation lost another's key: {all:?}");
        for id in &ids {
            assert!(all.contains(id));
        }
        assert_eq!(vault.active_key_id(), "k9");
    }

    #[test]
    fn ids_follow_custom_names_and_missing_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(
            &path,
            format!("# prod keys\nprod-2025:{}", Vault::generate_key()),
        )
        .unwrap();
        assert_eq!(Vault::append_new_key(&path).unwrap(), "k2");
        assert_eq!(Vault::append_new_key(&path).unwrap(), "k3");
        let vault = Vault::from_file(&path).unwrap();
        assert_eq!(vault.key_ids(), ["prod-2025", "k2", "k3"]);
        assert_eq!(next_key_id(&["k7".into(), "x".into()]), "k8");
        assert_eq!(next_key_id(&["a".into(), "b".into()]), "k3");
    }

    #[test]
    fn append_refuses_a_missing_or_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Vault::append_new_key(&dir.path().join("absent")).is_err());
        let broken = dir.path().join("broken");
        std::fs::write(&broken, "k1:notbase64!\n").unwrap();
        assert!(Vault::append_new_key(&broken).is_err());
        assert_eq!(
            std::fs::read_to_string(&broken).unwrap(),
            "k1:notbase64!\n",
            "a file that does not parse is left alone"
        );
    }

    #[test]
    fn a_file_vault_follows_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path());
        let running = Vault::from_file(&path).unwrap();
        let k1_ct = running.encrypt(b"old", ROW_A);
        Vault::append_new_key(&path).unwrap();
        // Another process encrypts under the new key; the running vault
        // meets the unknown id and looks at the file at once.
        let ct = Vault::from_file(&path).unwrap().encrypt(b"token", ROW_A);
        assert!(ct.starts_with("v1.k2."));
        assert_eq!(running.decrypt(&ct, ROW_A).unwrap().expose(), b"token");
        assert_eq!(running.active_key_id(), "k2");
        assert!(!running.reload().unwrap(), "nothing changed since");

        // A key removed from the file stays usable in a running process.
        let only_k2: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("k2:"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, only_k2).unwrap();
        running.reload().unwrap();
        assert_eq!(running.key_ids(), ["k1", "k2"]);
        assert!(running.decrypt(&k1_ct, ROW_A).is_ok());

        // A spec vault has no file to follow.
        assert!(!vault().reload().unwrap());
        assert_eq!(Vault::key_id_of(&ct), Some("k2"));
        assert_eq!(Vault::key_id_of("garbage"), None);
    }

    #[test]
    fn bad_specs_are_rejected() {
        for spec in ["", "k1", "k1:notbase64!", "k1:AAAA", "bad id:AAAA"] {
            assert!(Vault::from_spec(spec).is_err(), "{spec}");
        }
    }

    #[test]
    fn a_command_provides_the_keys_in_the_key_files_format() {
        let (k1, k2) = (Vault::generate_key(), Vault::generate_key());
        let v = command_vault(&format!("printf 'k1:{k1}\\nk2:{k2}\\n'")).unwrap();
        assert_eq!(v.key_ids(), ["k1", "k2"]);
        assert_eq!(
            v.active_key_id(),
            "k2",
            "the last key is active, as in a file"
        );
        let same = Vault::from_spec(&format!("k1:{k1},k2:{k2}")).unwrap();
        let ct = v.encrypt(b"shpss_secret", ROW_A);
        assert_eq!(same.decrypt(&ct, ROW_A).unwrap().expose(), b"shpss_secret");
    }

    #[test]
    fn a_failing_command_says_why_and_never_shows_its_output() {
        let key = Vault::generate_key();
        let e = command_vault(&format!("echo k1:{key}; echo 'not logged in' >&2; exit 3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not logged in") && e.contains('3'), "{e}");
        assert!(!e.contains(&key), "the output never reaches an error: {e}");
        // Output that is not keys: said without repeating it.
        let e = command_vault("echo 'k1:oops-this-is-no-key'")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("output") && !e.contains("oops-this-is-no-key"),
            "{e}"
        );
        let e = command_vault("true").unwrap_err().to_string();
        assert!(e.contains("no master key"), "{e}");
    }

    #[test]
    fn a_command_that_hangs_fails_the_start_in_time() {
        let e =
            Vault::from_source(&CommandKeys::new("sleep 30").within(Duration::from_millis(200)))
                .unwrap_err()
                .to_string();
        assert!(e.contains("no answer within"), "{e}");
    }

    fn command_vault(command: &str) -> Result<Vault, VaultError> {
        Vault::from_source(&CommandKeys::new(command))
    }

    #[test]
    fn inline_keys_are_read_once_and_described_without_the_keys() {
        let key = Vault::generate_key();
        let spec = format!("k1:{key}");
        let source = InlineKeys::new(&spec);
        assert_eq!(source.load().unwrap().ids(), ["k1"]);
        assert!(source.followed_file().is_none());
        let v = Vault::from_source(&source).unwrap();
        assert_eq!(v.source(), "master_keys");
        assert!(!v.reload().unwrap(), "nothing to follow");
        assert!(!format!("{v:?}").contains(&key), "{v:?}");
        assert!(!format!("{:?}", source.load().unwrap()).contains(&key));
    }

    #[test]
    fn file_keys_name_their_file_and_the_vault_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path());
        let source = FileKeys::new(&path);
        assert_eq!(source.followed_file(), Some(path.as_path()));
        assert_eq!(source.describe(), format!("key file {}", path.display()));
        let v = Vault::from_source(&source).unwrap();
        assert_eq!(v.key_file(), Some(path.as_path()));
        Vault::append_new_key(&path).unwrap();
        assert!(v.reload().unwrap(), "the new key is taken up live");
        assert_eq!(v.key_ids(), ["k1", "k2"]);
        assert_eq!(source.load().unwrap().ids(), ["k1", "k2"]);
        // A missing file is the I/O error `serve` turns into a new key.
        let absent = FileKeys::new(dir.path().join("absent"));
        assert!(matches!(
            Vault::from_source(&absent),
            Err(VaultError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn command_keys_never_describe_the_command() {
        let key = Vault::generate_key();
        let source = CommandKeys::new(format!("VAULT_TOKEN=s.secret123 echo k1:{key}"));
        assert_eq!(source.describe(), "master_key_command");
        assert!(source.followed_file().is_none());
        let v = Vault::from_source(&source).unwrap();
        assert_eq!(v.key_ids(), ["k1"]);
        assert!(!v.reload().unwrap(), "read once, at start");
        let shown = format!("{v:?}");
        assert!(
            !shown.contains("s.secret123") && !shown.contains(&key),
            "{shown}"
        );
    }

    /// Any source builds a vault: the interface is open to one more.
    #[test]
    fn a_source_of_ones_own_builds_a_vault() {
        struct Fixed(String);
        impl KeySource for Fixed {
            fn load(&self) -> Result<Keys, VaultError> {
                Keys::parse(&self.0)
            }
            fn describe(&self) -> String {
                "fixed".into()
            }
        }
        let key = Vault::generate_key();
        let v =
            Vault::from_source(&Fixed(format!("a:{key}\nb:{}", Vault::generate_key()))).unwrap();
        assert_eq!((v.source(), v.active_key_id()), ("fixed", "b".to_string()));
        let ct = Vault::from_spec(&format!("a:{key}"))
            .unwrap()
            .encrypt(b"x", ROW_A);
        assert_eq!(v.decrypt(&ct, ROW_A).unwrap().expose(), b"x");
        assert!(Vault::from_source(&Fixed(String::new())).is_err());
    }
}
