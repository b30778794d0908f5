//! Random bytes for ids (request ids, trace and span ids) without a system
//! call each: rand's thread-local generator (ChaCha12, seeded from the
//! operating system and reseeded by rand), instead of one `getrandom(2)` per
//! id.

use rand::RngCore;

/// 16 random bytes.
pub(crate) fn bytes16() -> [u8; 16] {
    let mut out = [0u8; 16];
    rand::rng().fill_bytes(&mut out);
    out
}

/// A random version 4 UUID.
pub(crate) fn uuid_v4() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(bytes16()).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_differ_and_are_version_4() {
        let (a, b) = (super::uuid_v4(), super::uuid_v4());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
        assert_ne!(super::bytes16(), super::bytes16());
    }
}
