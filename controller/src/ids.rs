//! Object ids: 20 lower-case base-36 characters, like Swarm's.

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const LEN: usize = 20;

/// A new random id (about 103 bits: collisions are not a concern).
pub fn new_id() -> String {
    (0..LEN)
        .map(|_| ALPHABET[rand::random::<usize>() % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_twenty_base36_characters_and_differ() {
        let a = super::new_id();
        let b = super::new_id();
        assert_eq!(a.len(), 20);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert_ne!(a, b);
    }
}
