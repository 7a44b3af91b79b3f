//! When a certificate is renewed: at a random point between 50 % and 80 % of
//! its lifetime (as Swarm), so a fleet issued at once does not renew at once,
//! and long before it expires.

/// The time (ms) to renew a certificate valid from `not_before_ms` to
/// `not_after_ms`; `fraction` in [0, 1) picks the point (pass a random one).
/// The lifetime counts from when the certificate was issued, not from its
/// backdated start: a certificate of minutes is not renewed at once.
/// A healthy node renews at least a day before the expiry warning starts, so
/// a warning always means a certificate that should have been renewed.
pub fn renew_at(not_before_ms: i64, not_after_ms: i64, fraction: f64) -> i64 {
    let issued = (not_before_ms + crate::ca::BACKDATE.as_millis() as i64).min(not_after_ms);
    let lifetime = (not_after_ms - issued).max(0) as f64;
    let point = 0.5 + 0.3 * fraction.clamp(0.0, 1.0);
    let at = issued + (lifetime * point) as i64;
    let half = issued + (lifetime * 0.5) as i64;
    let before_warning = not_after_ms - WARN_BEFORE_MS - DAY_MS;
    if before_warning >= half {
        at.min(before_warning)
    } else {
        at
    }
}

/// Certificates that expire within this are warned about (logs, `cluster status`).
pub const WARN_BEFORE_MS: i64 = 30 * DAY_MS;
const DAY_MS: i64 = 24 * 3600 * 1000;

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
        // 90 days: never later than 31 days before the expiry.
        let day = 24 * hour;
        let not_after = hour + 90 * day;
        assert_eq!(renew_at(0, not_after, 1.0), not_after - 31 * day);
        assert_eq!(renew_at(0, not_after, 0.0), hour + 45 * day);
    }
}
