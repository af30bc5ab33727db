//! How large blobs (webhook bodies, logged event payloads) are kept at rest.
//!
//! SQLite rewrites a whole record to change any column of it, and every page
//! it writes goes to the WAL, is synced, then copied again at checkpoint.
//! Shopify's JSON compresses 3–5×, so a zstd frame per blob cuts what the
//! single writer moves for each webhook several times over (BENCHMARKS.md,
//! "Bodies at rest"). Compression happens before the write turn is taken (on
//! the request's task), decompression after the read, so neither lengthens
//! the time anyone holds the database's one write lock.
//!
//! Each row says how its blob is encoded (`identity` or `zstd`), so rows
//! written before this existed, and blobs too small to gain, stay readable
//! as they are.

use std::cell::RefCell;

use super::StoreError;

/// Blobs smaller than this are kept as they are: a zstd frame's fixed cost
/// would eat most of the gain.
const MIN_COMPRESSED: usize = 512;

/// zstd's fastest standard level: about as small as level 3 on JSON of
/// this size, at a fraction of the time.
const LEVEL: i32 = 1;

/// A decoded blob is refused beyond this: far above any body the gateway
/// accepts, so only a corrupt frame reaches it.
const MAX_DECODED: usize = 256 * 1024 * 1024;

/// A blob as stored: its bytes and how they are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub encoding: Encoding,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Zstd,
}

impl Encoding {
    /// The value of the row's encoding column.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Zstd => "zstd",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "identity" => Ok(Encoding::Identity),
            "zstd" => Ok(Encoding::Zstd),
            other => Err(StoreError::Corrupt(format!(
                "unknown blob encoding {other:?}"
            ))),
        }
    }
}

thread_local! {
    // A compression context costs more to set up than a 6 KB body costs to
    // compress; each thread keeps one. So does a decompression context:
    // made afresh for every read (the dispatcher's body, the event log's
    // payload), its allocation alone was 3% of the tokio workers' time at
    // the peak, and reusing it raised acked/s 6–17% (BENCHMARKS.md).
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

impl Blob {
    /// The form to store `plain` in: compressed when that makes it smaller.
    pub fn encode(plain: &[u8]) -> Self {
        if plain.len() >= MIN_COMPRESSED
            && let Some(bytes) = compress(plain)
            && bytes.len() < plain.len()
        {
            return Blob {
                encoding: Encoding::Zstd,
                bytes,
            };
        }
        Blob {
            encoding: Encoding::Identity,
            bytes: plain.to_vec(),
        }
    }

    /// The plain bytes of a stored blob, from the row's two columns.
    pub fn decode(encoding: &str, bytes: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match Encoding::parse(encoding)? {
            Encoding::Identity => Ok(bytes),
            Encoding::Zstd => {
                let corrupt = |e: std::io::Error| StoreError::Corrupt(format!("zstd blob: {e}"));
                let size = zstd::zstd_safe::get_frame_content_size(&bytes)
                    .ok()
                    .flatten()
                    .ok_or_else(|| StoreError::Corrupt("zstd blob without a size".into()))?;
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&s| s <= MAX_DECODED)
                    .ok_or_else(|| StoreError::Corrupt(format!("zstd blob of {size} bytes")))?;
                decompress(&bytes, size).map_err(corrupt)
            }
        }
    }
}

/// `None` only if zstd fails, which it does not for in-memory input; the
/// caller then stores the plain bytes.
fn compress(plain: &[u8]) -> Option<Vec<u8>> {
    with_context(
        &COMPRESSOR,
        || zstd::bulk::Compressor::new(LEVEL),
        |c| c.compress(plain),
    )
    .ok()
}

fn decompress(frame: &[u8], size: usize) -> std::io::Result<Vec<u8>> {
    with_context(&DECOMPRESSOR, zstd::bulk::Decompressor::new, |d| {
        d.decompress(frame, size)
    })
}

/// Runs `work` on this thread's context in `slot`, made by `make` on first
/// use (and tried again on the next call if that failed).
fn with_context<C: 'static, T>(
    slot: &'static std::thread::LocalKey<RefCell<Option<C>>>,
    make: impl FnOnce() -> std::io::Result<C>,
    work: impl FnOnce(&mut C) -> std::io::Result<T>,
) -> std::io::Result<T> {
    slot.with(|slot| {
        let mut slot = slot.borrow_mut();
        let context = match &mut *slot {
            Some(context) => context,
            empty => empty.insert(make()?),
        };
        work(context)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let order = r#"{"id":820982911946154508,"email":"jon@example.com","line_items":[{"title":"IPod Nano - 8GB","price":"199.00"}],"#;
        order.repeat(40).into_bytes()
    }

    #[test]
    fn round_trips_compressed() {
        let plain = sample();
        let stored = Blob::encode(&plain);
        assert_eq!(stored.encoding, Encoding::Zstd);
        assert!(stored.bytes.len() < plain.len() / 2);
        assert_eq!(
            Blob::decode(stored.encoding.as_str(), stored.bytes).unwrap(),
            plain
        );
    }

    #[test]
    fn small_or_incompressible_blobs_stay_as_they_are() {
        let small = br#"{"id":1}"#;
        assert_eq!(Blob::encode(small).encoding, Encoding::Identity);
        let noise: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        let stored = Blob::encode(&noise);
        assert_eq!(stored.encoding, Encoding::Identity);
        assert_eq!(stored.bytes, noise);
    }

    #[test]
    fn a_corrupt_frame_leaves_the_threads_decompressor_usable() {
        // The context is reused across reads, so one bad row must not
        // spoil the next good one.
        let good = Blob::encode(&sample());
        let mut bad = good.bytes.clone();
        bad.truncate(bad.len() / 2);
        for _ in 0..3 {
            assert!(Blob::decode("zstd", bad.clone()).is_err());
            assert_eq!(Blob::decode("zstd", good.bytes.clone()).unwrap(), sample());
        }
    }

    #[test]
    fn corrupt_or_unknown_blobs_are_errors_not_panics() {
        assert!(matches!(
            Blob::decode("zstd", b"not a frame".to_vec()),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            Blob::decode("brotli", b"{}".to_vec()),
            Err(StoreError::Corrupt(_))
        ));
        let mut frame = Blob::encode(&sample()).bytes;
        let n = frame.len();
        frame.truncate(n - 8);
        assert!(matches!(
            Blob::decode("zstd", frame),
            Err(StoreError::Corrupt(_))
        ));
    }
}
