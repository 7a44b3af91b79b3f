//! Join tokens: `BERTH-1-<sha256 of the CA bundle, hex>-<128-bit secret, hex>`.
//! The digest lets a joiner pin the CA on first contact (it fetches the CA
//! unverified and checks it against the digest, so a man in the middle cannot
//! slip in its own root); the secret proves the joiner may join, in a role.

use std::fmt;

use crate::PkiError;

const PREFIX: &str = "BERTH-1-";

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the CA bundle's PEM, lower-case hex.
    pub ca_digest: String,
    /// 32 lower-case hex digits.
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_digest", &self.ca_digest)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}-{}", self.ca_digest, self.secret)
    }
}

/// The token the daemons were given: `--token-file`'s content when set
/// (trimmed; a missing file is no error — the token is needed only to join,
/// and operators remove it once joined), else `--token`.
pub fn from_flags(
    token: Option<&str>,
    token_file: Option<&std::path::Path>,
) -> Result<Option<String>, PkiError> {
    let Some(path) = token_file else {
        return Ok(token.map(str::to_string));
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "read the token file",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A new random secret for a token.
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl JoinToken {
    pub fn parse(text: &str) -> Result<JoinToken, PkiError> {
        let text = text.trim();
        let bad = |why: &str| {
            PkiError::BadToken(format!(
                "malformed join token: {why} (expected BERTH-1-<64 hex digits>-<32 hex digits>, \
                 as `berth cluster join-token agent` prints)"
            ))
        };
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with BERTH-1-"))?;
        let (digest, secret) = rest
            .split_once('-')
            .ok_or_else(|| bad("it has no secret part"))?;
        if !is_hex(digest, 64) {
            return Err(bad("the CA digest is not 64 lower-case hex digits"));
        }
        if !is_hex(secret, 32) {
            return Err(bad("the secret is not 32 lower-case hex digits"));
        }
        Ok(JoinToken {
            ca_digest: digest.to_string(),
            secret: secret.to_string(),
        })
    }

    /// Whether `secret` is this token's secret, in time independent of where
    /// they differ.
    pub fn secret_matches(&self, secret: &str) -> bool {
        let (a, b) = (self.secret.as_bytes(), secret.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_hides_its_secret_from_debug() {
        let token = JoinToken {
            ca_digest: crate::bundle::ca_digest("x"),
            secret: new_secret(),
        };
        let parsed = JoinToken::parse(&format!(" {token}\n")).unwrap();
        assert_eq!(parsed, token);
        assert!(parsed.secret_matches(&token.secret));
        assert!(!parsed.secret_matches(&new_secret()));
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (text, why) in [
            ("SWMTKN-1-abc-def", "does not start with BERTH-1-"),
            ("BERTH-1-abc", "no secret part"),
            ("BERTH-1-abc-0123456789abcdef0123456789abcdef", "CA digest"),
            (
                "BERTH-1-0000000000000000000000000000000000000000000000000000000000000000-xyz",
                "secret is not",
            ),
        ] {
            let err = JoinToken::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
