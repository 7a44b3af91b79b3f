//! When a certificate is renewed: at a random point between 50 % and 80 % of
//! its lifetime (as Swarm), so a fleet issued at once does not renew at once,
//! and long before it expires.

/// The time (ms) to renew a certificate valid from `not_before_ms` to
/// `not_after_ms`; `fraction` in [0, 1) picks the point (pass a random one).
pub fn renew_at(not_before_ms: i64, not_after_ms: i64, fraction: f64) -> i64 {
    let lifetime = (not_after_ms - not_before_ms).max(0) as f64;
    let point = 0.5 + 0.3 * fraction.clamp(0.0, 1.0);
    not_before_ms + (lifetime * point) as i64
}

/// [`renew_at`] at a random point.
pub fn random_renew_at(not_before_ms: i64, not_after_ms: i64) -> i64 {
    renew_at(not_before_ms, not_after_ms, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_lifetime() {
        assert_eq!(renew_at(0, 1000, 0.0), 500);
        assert_eq!(renew_at(0, 1000, 1.0), 800);
        for _ in 0..100 {
            let at = random_renew_at(1000, 2000);
            assert!((1500..=1800).contains(&at), "{at}");
        }
    }
}
