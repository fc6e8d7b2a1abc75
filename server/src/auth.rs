//! Login tokens: JWTs signed with HS256 (a secret shared with the studio's login service),
//! checked for signature, algorithm, expiry (with [`TOKEN_LEEWAY_S`]), audience and issuer.
//! Each refusal maps to the protocol's [`ErrorCode`].
//!
//! The claims a token must carry: `sub` (the player id, decimal, at most
//! [`PlayerId::MAX`]), `iss`, `aud`, `exp`; optionally `name` (display name) and `iat`.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tessera_regions::hash::Fnv1a;
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::limits::TOKEN_BYTES_MAX;
use tessera_shared::protocol::messages::ErrorCode;

/// Clock skew tolerated on `exp`, in seconds.
pub const TOKEN_LEEWAY_S: u64 = 30;
/// Shortest HS256 secret accepted: 256 bits, as RFC 7518 requires for HS256.
pub const SECRET_BYTES_MIN: usize = 32;
/// Longest display name carried by a token.
pub const NAME_BYTES_MAX: usize = 64;

/// The claims of a login token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The player id, decimal.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Who a valid token logs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The player.
    pub player: PlayerId,
    /// Display name (empty if the token has none).
    pub name: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Longer than the protocol allows.
    #[error("token longer than {TOKEN_BYTES_MAX} bytes")]
    TooLong,
    /// Not a JWT, or its signature, algorithm or claims are malformed or wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Expired (beyond the leeway) or not yet valid.
    #[error("token expired")]
    Expired,
    /// For another audience or issuer.
    #[error("token for another audience or issuer")]
    WrongAudience,
    /// `sub` is not a player id in range.
    #[error("token subject is not a valid player id")]
    BadSubject,
}

impl AuthError {
    /// The protocol error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::TooLong | AuthError::Invalid(_) | AuthError::BadSubject => {
                ErrorCode::BadToken
            }
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::WrongAudience => ErrorCode::WrongAudience,
        }
    }
}

/// Why a verifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than [`SECRET_BYTES_MIN`].
    #[error("the HS256 secret must be at least {SECRET_BYTES_MIN} bytes, got {0}")]
    SecretTooShort(usize),
}

/// Verifies login tokens against one secret, issuer and audience.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TokenVerifier")
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`, issued by `issuer` for `audience`.
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Result<TokenVerifier, KeyError> {
        if secret.len() < SECRET_BYTES_MIN {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = TOKEN_LEEWAY_S;
        validation.validate_exp = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(TokenVerifier {
            key: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// Checks `token` and returns who it logs in.
    pub fn verify(&self, token: &str) -> Result<Login, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::TooLong);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => AuthError::Expired,
                ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => AuthError::WrongAudience,
                ErrorKind::InvalidSubject => AuthError::BadSubject,
                _ => AuthError::Invalid(e.to_string()),
            },
        )?;
        let claims = data.claims;
        let player = claims
            .sub
            .parse::<u64>()
            .ok()
            .map(PlayerId)
            .filter(|p| p.is_valid())
            .ok_or(AuthError::BadSubject)?;
        let mut name = claims.name.unwrap_or_default();
        if name.len() > NAME_BYTES_MAX {
            let mut end = NAME_BYTES_MAX;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        Ok(Login { player, name })
    }
}

/// Signs a token (for `tessera token` and tests; production tokens come from the studio's
/// login service).
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of serializable claims cannot fail")
}

/// Issuer of dev tokens.
pub const DEV_ISSUER: &str = "tessera-dev";
/// Audience of dev tokens (and of the dev node).
pub const DEV_AUDIENCE: &str = "tessera";
/// File in the data dir holding the dev node's generated HS256 secret.
pub const DEV_SECRET_FILE: &str = "dev-jwt-secret";

/// The dev node's HS256 secret, generated (32 random bytes from the OS) on first use.
pub fn dev_secret(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use ring::rand::SecureRandom;
    let path = data_dir.join(DEV_SECRET_FILE);
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let mut secret = vec![0u8; SECRET_BYTES_MIN];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| anyhow::anyhow!("the OS random number generator failed"))?;
        std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
        tracing::warn!(path = %path.display(), "generated a DEV token secret; not for production");
    }
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// The claims of a dev token for the display name `name`, valid for `ttl_s` from `now_s`.
pub fn dev_claims(name: &str, now_s: u64, ttl_s: u64) -> Claims {
    Claims {
        sub: dev_player_id(name).0.to_string(),
        iss: DEV_ISSUER.into(),
        aud: DEV_AUDIENCE.into(),
        exp: now_s.saturating_add(ttl_s),
        iat: Some(now_s),
        name: Some(name.into()),
    }
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The player id a dev token gives the display name `name`: a stable hash, in range.
pub fn dev_player_id(name: &str) -> PlayerId {
    let mut h = Fnv1a::new();
    h.bytes(name.as_bytes());
    PlayerId(h.finish() & PlayerId::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const ISS: &str = "tessera-dev";
    const AUD: &str = "tessera";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims() -> Claims {
        Claims {
            sub: "42".into(),
            iss: ISS.into(),
            aud: AUD.into(),
            exp: now() + 600,
            iat: Some(now()),
            name: Some("ada".into()),
        }
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::hs256(SECRET, ISS, AUD).unwrap()
    }

    #[test]
    fn a_valid_token_logs_in() {
        let login = verifier().verify(&mint(SECRET, &claims())).unwrap();
        assert_eq!(
            login,
            Login {
                player: PlayerId(42),
                name: "ada".into()
            }
        );
    }

    #[test]
    fn every_kind_of_bad_token_is_refused_with_its_code() {
        let v = verifier();
        let code = |token: &str| v.verify(token).unwrap_err().code();
        let other_secret = b"ffffffffffffffffffffffffffffffff";
        assert_eq!(code(&mint(other_secret, &claims())), ErrorCode::BadToken);
        let expired = Claims {
            exp: now() - TOKEN_LEEWAY_S - 60,
            ..claims()
        };
        assert_eq!(code(&mint(SECRET, &expired)), ErrorCode::TokenExpired);
        let within_leeway = Claims {
            exp: now() - 5,
            ..claims()
        };
        assert!(v.verify(&mint(SECRET, &within_leeway)).is_ok());
        let wrong_aud = Claims {
            aud: "other-game".into(),
            ..claims()
        };
        assert_eq!(code(&mint(SECRET, &wrong_aud)), ErrorCode::WrongAudience);
        let wrong_iss = Claims {
            iss: "evil".into(),
            ..claims()
        };
        assert_eq!(code(&mint(SECRET, &wrong_iss)), ErrorCode::WrongAudience);
        for sub in ["x", "-1", "18446744073709551615", "9223372036854775808"] {
            let bad = Claims {
                sub: sub.into(),
                ..claims()
            };
            assert_eq!(code(&mint(SECRET, &bad)), ErrorCode::BadToken, "sub {sub}");
        }
        for garbage in ["", "abc", "a.b.c", "....", &"x".repeat(TOKEN_BYTES_MAX + 1)] {
            assert_eq!(code(garbage), ErrorCode::BadToken, "{garbage:.20}");
        }
    }

    #[test]
    fn unsigned_and_other_algorithm_tokens_are_refused() {
        use base64::Engine;
        let b64url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let payload = serde_json::to_vec(&claims()).unwrap();
        // alg "none": header.payload. with an empty signature.
        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            b64url(&payload)
        );
        assert_eq!(
            verifier().verify(&none).unwrap_err().code(),
            ErrorCode::BadToken
        );
        // HS512 with the right secret: right key, wrong algorithm.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            verifier().verify(&hs512).unwrap_err().code(),
            ErrorCode::BadToken
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            TokenVerifier::hs256(b"short", ISS, AUD).unwrap_err(),
            KeyError::SecretTooShort(5)
        );
    }

    #[test]
    fn dev_ids_are_stable_and_in_range() {
        assert_eq!(dev_player_id("ada"), dev_player_id("ada"));
        assert_ne!(dev_player_id("ada"), dev_player_id("bob"));
        assert!(dev_player_id("ada").is_valid());
    }
}
