//! Comparing secrets without telling the caller how close they came.

use sha2::{Digest, Sha256};

/// Whether `a` and `b` are equal, in a time that depends on neither where
/// they differ nor their lengths: the digests are compared, not the inputs.
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn equal_and_unequal() {
        assert!(super::eq(b"token", b"token"));
        assert!(!super::eq(b"token", b"tokeN"));
        assert!(!super::eq(b"token", b"token2"));
        assert!(super::eq(b"", b""));
    }
}
