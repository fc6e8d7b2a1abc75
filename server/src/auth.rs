//! Login tokens and session tickets.
//!
//! Login tokens are JWTs from the studio's login service, signed with one pinned algorithm
//! (HS256 with a shared secret, or RS256/ES256/EdDSA with the node holding the public
//! key), checked for signature, algorithm, expiry (with [`TOKEN_LEEWAY_S`]), audience and
//! issuer. Each refusal maps to the protocol's [`ErrorCode`]. The claims a token must
//! carry: `sub` (the player id, decimal, at most [`PlayerId::MAX`]), `iss`, `aud`, `exp`;
//! optionally `name` (display name) and `iat`.
//!
//! Tickets (resume and redirect, PROTOCOL.md section 6) are minted by nodes for their own
//! clients: HS256 JWTs under a secret every node of a cluster shares, valid for
//! [`TICKET_TTL_S`]. To a client they are opaque bytes. Operators' kicks ([`Kicks`])
//! refuse the kicked sessions' resume tickets.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tessera_regions::hash::Fnv1a;
use tessera_shared::config::TokenAlgorithm;
use tessera_shared::ids::{PlayerId, RegionId};
use tessera_shared::protocol::limits::{TICKET_BYTES_MAX, TOKEN_BYTES_MAX};
use tessera_shared::protocol::messages::ErrorCode;

mod kicks;
pub use kicks::{KICK_MEMORY_MS, KICKS_REMEMBERED_MAX, Kick, Kicks};

/// Clock skew tolerated on `exp`, in seconds.
pub const TOKEN_LEEWAY_S: u64 = 30;
/// Shortest HS256 secret accepted: 256 bits, as RFC 7518 requires for HS256.
pub const SECRET_BYTES_MIN: usize = 32;
/// Longest display name carried by a token.
pub const NAME_BYTES_MAX: usize = tessera_shared::protocol::limits::PLAYER_NAME_BYTES_MAX;

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
    /// The region a player with no saved state starts in (the login service's choice of
    /// a starting zone). Ignored for a player with a save, and when this node does not
    /// hold that region: the player starts in the node's first region then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<u32>,
}

/// Who a valid token logs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The player.
    pub player: PlayerId,
    /// Display name (empty if the token has none).
    pub name: String,
    /// Where a new player starts, if the token says (its `region` claim).
    pub start_region: Option<RegionId>,
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
    /// The public key is not a PEM key of the configured algorithm.
    #[error("not a {algorithm} public key in PEM: {reason}")]
    BadPublicKey {
        /// The configured algorithm.
        algorithm: &'static str,
        /// What the parser said.
        reason: String,
    },
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
    /// A verifier for tokens signed with `algorithm`: `key` is the HS256 secret (raw
    /// bytes) or the PEM public key of the others. Only that algorithm is accepted.
    pub fn new(
        algorithm: TokenAlgorithm,
        key: &[u8],
        issuer: &str,
        audience: &str,
    ) -> Result<TokenVerifier, KeyError> {
        let bad = |name: &'static str| {
            move |e: jsonwebtoken::errors::Error| KeyError::BadPublicKey {
                algorithm: name,
                reason: e.to_string(),
            }
        };
        let (alg, key) = match algorithm {
            TokenAlgorithm::Hs256 => {
                if key.len() < SECRET_BYTES_MIN {
                    return Err(KeyError::SecretTooShort(key.len()));
                }
                (Algorithm::HS256, DecodingKey::from_secret(key))
            }
            TokenAlgorithm::Rs256 => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(key).map_err(bad("RS256"))?,
            ),
            TokenAlgorithm::Es256 => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(key).map_err(bad("ES256"))?,
            ),
            TokenAlgorithm::EdDsa => (
                Algorithm::EdDSA,
                DecodingKey::from_ed_pem(key).map_err(bad("EdDSA"))?,
            ),
        };
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = TOKEN_LEEWAY_S;
        validation.validate_exp = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(TokenVerifier { key, validation })
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
        let player = player_of(&claims.sub).ok_or(AuthError::BadSubject)?;
        let mut name = claims.name.unwrap_or_default();
        if name.len() > NAME_BYTES_MAX {
            let mut end = NAME_BYTES_MAX;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        Ok(Login {
            player,
            name,
            start_region: claims.region.map(RegionId),
        })
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
/// File in the data dir holding the dev node's generated ticket secret.
pub const DEV_TICKET_SECRET_FILE: &str = "dev-ticket-secret";

/// The dev node's HS256 secret, generated (32 random bytes from the OS) on first use.
pub fn dev_secret(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    generated_secret(data_dir, DEV_SECRET_FILE)
}

/// The secret in `data_dir/file`, generated (32 random bytes from the OS) on first use.
pub fn generated_secret(data_dir: &std::path::Path, file: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use ring::rand::SecureRandom;
    let path = data_dir.join(file);
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let mut secret = vec![0u8; SECRET_BYTES_MIN];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| anyhow::anyhow!("the OS random number generator failed"))?;
        std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
        tracing::warn!(path = %path.display(), "generated a DEV secret; not for production");
    }
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// The claims of a dev token for the display name `name`, valid for `ttl_s` from `now_s`.
pub fn dev_claims(name: &str, now_s: u64, ttl_s: u64) -> Claims {
    claims_for(name, DEV_ISSUER, DEV_AUDIENCE, now_s, ttl_s)
}

/// Token claims for the display name `name` (player id [`dev_player_id`]) from `issuer`
/// for `audience`, valid for `ttl_s` from `now_s`.
pub fn claims_for(name: &str, issuer: &str, audience: &str, now_s: u64, ttl_s: u64) -> Claims {
    Claims {
        sub: dev_player_id(name).0.to_string(),
        iss: issuer.into(),
        aud: audience.into(),
        exp: now_s.saturating_add(ttl_s),
        iat: Some(now_s),
        name: Some(name.into()),
        region: None,
    }
}

/// The HS256 secret `tessera token` and `tessera bots` sign with: the configured
/// `[auth] key_file`, or the generated dev secret. Nodes verifying public-key tokens
/// cannot mint: their tokens come from the login service only.
pub fn signing_secret(node: &tessera_shared::config::NodeConfig) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    if node.auth.algorithm != TokenAlgorithm::Hs256 {
        anyhow::bail!(
            "this node verifies {:?} tokens with a public key; only the login service holding \
             the private key can mint them",
            node.auth.algorithm
        );
    }
    match &node.auth.key_file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display())),
        None => dev_secret(&node.data_dir),
    }
}

/// How long a ticket is valid. A resume ticket is also how long a dropped player's avatar
/// stays in the world waiting for it.
pub const TICKET_TTL_S: u64 = 30;
/// Clock skew between nodes tolerated on a ticket's expiry, in seconds.
pub const TICKET_LEEWAY_S: u64 = 5;
const TICKET_ISSUER: &str = "tessera-node";
const TICKET_AUDIENCE: &str = "tessera-ticket";

/// What a ticket lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketKind {
    /// Continue a session after a dropped connection.
    Resume,
    /// Log in on the node a `Redirect` named, into `region`.
    Redirect,
}

/// The content of a valid ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The player it logs in.
    pub player: PlayerId,
    /// Resume or redirect.
    pub kind: TicketKind,
    /// The region the player is expected in (redirects).
    pub region: Option<RegionId>,
    /// The player's display name, from the token it first logged in with (at most
    /// [`NAME_BYTES_MAX`] bytes; empty: none).
    pub name: String,
    /// When the session that issued it logged in, Unix ms (the same in every ticket of a
    /// session): a resume ticket of a session that began at or before an operator kicked
    /// its player is refused ([`Kicks`]).
    pub session_began_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct TicketClaims {
    sub: String,
    kind: TicketKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    /// [`Ticket::session_began_ms`] (absent in tickets of nodes from before it: 0).
    #[serde(default)]
    began_ms: u64,
    iss: String,
    aud: String,
    exp: u64,
}

/// Why a ticket was refused (the client gets `BadTicket` with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// Longer than the protocol allows, not UTF-8, or not a ticket of this cluster.
    #[error("invalid ticket")]
    Invalid,
    /// Past its lifetime.
    #[error("ticket expired")]
    Expired,
}

/// Mints and checks tickets with the cluster's shared secret.
#[derive(Clone)]
pub struct TicketKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys").finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// Keys from the shared `secret` (at least [`SECRET_BYTES_MIN`] bytes).
    pub fn new(secret: &[u8]) -> Result<TicketKeys, KeyError> {
        if secret.len() < SECRET_BYTES_MIN {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = TICKET_LEEWAY_S;
        validation.set_issuer(&[TICKET_ISSUER]);
        validation.set_audience(&[TICKET_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(TicketKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// A ticket for `ticket`, valid for [`TICKET_TTL_S`] from `now_s`. About 200 bytes,
    /// well under `TICKET_BYTES_MAX`.
    pub fn issue(&self, ticket: Ticket, now_s: u64) -> Vec<u8> {
        let claims = TicketClaims {
            sub: ticket.player.0.to_string(),
            kind: ticket.kind,
            region: ticket.region.map(|r| r.0),
            name: ticket.name,
            began_ms: ticket.session_began_ms,
            iss: TICKET_ISSUER.into(),
            aud: TICKET_AUDIENCE.into(),
            exp: now_s.saturating_add(TICKET_TTL_S),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of serializable claims cannot fail")
            .into_bytes()
    }

    /// Checks a ticket a client presented.
    pub fn verify(&self, bytes: &[u8]) -> Result<Ticket, TicketError> {
        if bytes.len() > TICKET_BYTES_MAX {
            return Err(TicketError::Invalid);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| TicketError::Invalid)?;
        let data = jsonwebtoken::decode::<TicketClaims>(text, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TicketError::Expired,
                _ => TicketError::Invalid,
            })?;
        let claims = data.claims;
        let player = player_of(&claims.sub).ok_or(TicketError::Invalid)?;
        let region = match claims.region {
            Some(r) if r <= RegionId::MAX => Some(RegionId(r)),
            Some(_) => return Err(TicketError::Invalid),
            None => None,
        };
        if claims.name.len() > NAME_BYTES_MAX {
            return Err(TicketError::Invalid);
        }
        Ok(Ticket {
            player,
            kind: claims.kind,
            region,
            name: claims.name,
            session_began_ms: claims.began_ms,
        })
    }
}

/// The player a `sub` claim names: a decimal id in range.
fn player_of(sub: &str) -> Option<PlayerId> {
    sub.parse::<u64>()
        .ok()
        .map(PlayerId)
        .filter(|p| p.is_valid())
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
            region: None,
        }
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(TokenAlgorithm::Hs256, SECRET, ISS, AUD).unwrap()
    }

    #[test]
    fn a_valid_token_logs_in() {
        let login = verifier().verify(&mint(SECRET, &claims())).unwrap();
        assert_eq!(
            login,
            Login {
                player: PlayerId(42),
                name: "ada".into(),
                start_region: None,
            }
        );
        let starting = Claims {
            region: Some(3),
            ..claims()
        };
        let login = verifier().verify(&mint(SECRET, &starting)).unwrap();
        assert_eq!(login.start_region, Some(RegionId(3)));
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
            TokenVerifier::new(TokenAlgorithm::Hs256, b"short", ISS, AUD).unwrap_err(),
            KeyError::SecretTooShort(5)
        );
    }

    #[test]
    fn tickets_round_trip_and_refuse_forgery_and_expiry() {
        let keys = TicketKeys::new(SECRET).unwrap();
        let ticket = Ticket {
            player: PlayerId(PlayerId::MAX),
            kind: TicketKind::Redirect,
            region: Some(RegionId(7)),
            name: "\u{1F600}".repeat(NAME_BYTES_MAX / 4),
            session_began_ms: u64::MAX,
        };
        let bytes = keys.issue(ticket.clone(), now());
        assert!(bytes.len() <= TICKET_BYTES_MAX, "{} bytes", bytes.len());
        assert_eq!(keys.verify(&bytes), Ok(ticket.clone()));
        // Another cluster's secret, an expired ticket, a login token, garbage: refused.
        let other = TicketKeys::new(b"ffffffffffffffffffffffffffffffff").unwrap();
        assert_eq!(other.verify(&bytes), Err(TicketError::Invalid));
        let old = keys.issue(ticket.clone(), now() - TICKET_TTL_S - TICKET_LEEWAY_S - 10);
        assert_eq!(keys.verify(&old), Err(TicketError::Expired));
        let login = mint(SECRET, &claims());
        assert_eq!(keys.verify(login.as_bytes()), Err(TicketError::Invalid));
        for garbage in [&b""[..], b"\xff\xfe", &[b'a'; TICKET_BYTES_MAX + 1]] {
            assert_eq!(keys.verify(garbage), Err(TicketError::Invalid));
        }
        // A flipped byte anywhere breaks it.
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] ^= 0x01;
            assert_ne!(keys.verify(&forged), Ok(ticket.clone()), "byte {i}");
        }
    }

    #[test]
    fn public_key_algorithms_verify_their_own_tokens_only() {
        use base64::Engine;
        use rcgen::PublicKeyData;
        // An Ed25519 key pair, the public half in PEM as a login service would publish it.
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let public_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pair.subject_public_key_info())
        );
        let v = TokenVerifier::new(TokenAlgorithm::EdDsa, public_pem.as_bytes(), ISS, AUD).unwrap();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims(),
            &EncodingKey::from_ed_der(&pair.serialize_der()),
        )
        .unwrap();
        assert_eq!(v.verify(&token).unwrap().player, PlayerId(42));
        // An HS256 token is refused by an EdDSA node, whatever its secret.
        assert_eq!(
            v.verify(&mint(SECRET, &claims())).unwrap_err().code(),
            ErrorCode::BadToken
        );
        // A key of the wrong kind is refused at startup.
        assert!(matches!(
            TokenVerifier::new(TokenAlgorithm::Rs256, public_pem.as_bytes(), ISS, AUD),
            Err(KeyError::BadPublicKey { .. })
        ));
        assert!(matches!(
            TokenVerifier::new(TokenAlgorithm::Es256, b"not pem", ISS, AUD),
            Err(KeyError::BadPublicKey { .. })
        ));
    }

    #[test]
    fn dev_ids_are_stable_and_in_range() {
        assert_eq!(dev_player_id("ada"), dev_player_id("ada"));
        assert_ne!(dev_player_id("ada"), dev_player_id("bob"));
        assert!(dev_player_id("ada").is_valid());
    }
}
