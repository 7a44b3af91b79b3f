//! When a certificate is renewed: at a random point between 50 % and 80 % of
//! its lifetime (as Swarm), so a fleet issued at once does not renew at once,
//! and long before it expires.

/// The time (ms) to renew a certificate valid from `not_before_ms` to
/// `not_after_ms`; `fraction` in [0, 1) picks the point (pass a random one).
/// The lifetime counts from when the certificate was issued, not from its
/// backdated start: a certificate of minutes is not renewed at once.
pub fn renew_at(not_before_ms: i64, not_after_ms: i64, fraction: f64) -> i64 {
    let issued = (not_before_ms + crate::ca::BACKDATE.as_millis() as i64).min(not_after_ms);
    let lifetime = (not_after_ms - issued).max(0) as f64;
    let point = 0.5 + 0.3 * fraction.clamp(0.0, 1.0);
    issued + (lifetime * point) as i64
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
        let hour = 3_600_000;
        // Issued at `hour` (backdated to 0), valid for 1000 ms.
        assert_eq!(renew_at(0, hour + 1000, 0.0), hour + 500);
        assert_eq!(renew_at(0, hour + 1000, 1.0), hour + 800);
        for _ in 0..100 {
            let at = random_renew_at(0, hour + 1000);
            assert!((hour + 500..=hour + 800).contains(&at), "{at}");
        }
    }
}
