//! JWT verification for `[security] enable_jwt_auth`.
//!
//! The key comes from exactly one of:
//!
//! * `jwt_secret_file`: a shared secret; tokens must be HS256.
//! * `jwt_public_key_path`: a PEM public key; RSA → RS256, EC P-256 → ES256 (P-384 →
//!   ES384).
//! * `jwt_jwks_path`: a JWKS file; each key verifies one algorithm (its `alg`, or the
//!   one its type implies), and a token picks its key with the `kid` header.
//!
//! Each key accepts exactly one algorithm, so `none` and algorithm confusion (an HS256
//! token "signed" with an RSA public key as the secret) are refused before any
//! signature is checked. A token must carry `exp`; `nbf` is checked when present;
//! `iss` and `aud` are checked when `jwt_issuer` / `jwt_audience` are configured; the
//! username is the non-empty `sub`.

use std::collections::HashSet;
use std::fmt;
use std::io::ErrorKind as IoErrorKind;
use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde_json::Value;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::config::SecurityConfig;

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
const MIN_SECRET_LEN: usize = 32;
/// Longest token looked at; anything longer is refused before parsing.
const MAX_TOKEN_LEN: usize = 64 * 1024;
/// RSA modulus sizes the verifier (aws-lc `RSA_*_2048_8192_*`) accepts, in bits.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// What a verified token says: who, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    /// The `sub` claim, non-empty: the username the token logs in as.
    pub sub: String,
    /// The `exp` claim in milliseconds since the Unix epoch (a session opened with the
    /// token should end then).
    pub exp_ms: u64,
}

/// Verifies tokens with the key of `[security]`.
///
/// Built once at start-up by [`JwtVerifier::from_config`] (which reads and checks the key
/// file), then shared: [`verify`](JwtVerifier::verify) takes `&self` and does no I/O.
/// `Debug` shows algorithms and key ids, never key material.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
}

#[derive(Clone)]
enum Keys {
    /// `jwt_secret_file` or `jwt_public_key_path`: one key; a token's `kid` is ignored.
    Single(VerifyingKey),
    /// `jwt_jwks_path`: never empty, ids unique.
    Jwks(Vec<VerifyingKey>),
}

/// A key bound to the one algorithm it verifies.
#[derive(Clone)]
struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = match &self.keys {
            Keys::Single(k) => vec![alg_name(k.alg)],
            Keys::Jwks(keys) => keys
                .iter()
                .map(|k| format!("{} kid={:?}", alg_name(k.alg), k.kid))
                .collect(),
        };
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl JwtVerifier {
    /// The verifier `[security]` describes: `Ok(None)` when `enable_jwt_auth` is off.
    ///
    /// Otherwise reads the one configured key source and checks it now, so a bad key
    /// stops start-up instead of failing every login:
    ///
    /// * `jwt_secret_file`: the file's bytes, trailing whitespace (newline) removed, are
    ///   the HS256 secret as-is (not base64-decoded); fewer than 32 bytes is refused.
    /// * `jwt_public_key_path`: a PEM `PUBLIC KEY` (also `RSA PUBLIC KEY` or a
    ///   `CERTIFICATE`, whose key is used): RSA 2048-8192 bits → RS256, EC P-256 →
    ///   ES256, EC P-384 → ES384. Private keys and other types are refused.
    /// * `jwt_jwks_path`: a JWKS (`{"keys": [...]}`). RSA keys verify their `alg`
    ///   (RS256 when absent; RS*/PS*), EC keys ES256 (P-256) or ES384 (P-384). Keys
    ///   marked `"use": "enc"`, symmetric (`oct`) keys and unsupported types are skipped
    ///   with a warning; no usable key left, or two keys with the same `kid`, is an error.
    ///
    /// Errors name the setting, the file and the problem, and never contain key material.
    pub fn from_config(config: &SecurityConfig) -> Result<Option<JwtVerifier>, String> {
        if !config.jwt_auth {
            return Ok(None);
        }
        let keys = match (
            &config.jwt_secret_file,
            &config.jwt_public_key_path,
            &config.jwt_jwks_path,
        ) {
            (Some(path), None, None) => Keys::Single(load_secret(path)?),
            (None, Some(path), None) => Keys::Single(load_public_key(path)?),
            (None, None, Some(path)) => Keys::Jwks(load_jwks(path)?),
            (None, None, None) => {
                return Err(
                    "[security] enable_jwt_auth is on but no JWT key is configured: set \
                            one of jwt_secret_file, jwt_public_key_path or jwt_jwks_path"
                        .to_string(),
                )
            }
            _ => {
                return Err(
                    "[security] more than one of jwt_secret_file, jwt_public_key_path \
                            and jwt_jwks_path is set: keep exactly one"
                        .to_string(),
                )
            }
        };
        Ok(Some(JwtVerifier {
            keys,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            leeway_secs: config.jwt_leeway.as_secs(),
        }))
    }

    /// The token's `sub` (the username) and `exp` when it verifies.
    ///
    /// Guarantees, in this order: the header's `alg` is the one algorithm of the key
    /// chosen (for a JWKS, by `kid`; a one-key JWKS also serves tokens without `kid`),
    /// so `none` and cross-family algorithms are refused; the header has no `crit`; the
    /// signature verifies; `exp` is present and not past (± `jwt_leeway`); `nbf`, when
    /// present, is not in the future (± `jwt_leeway`); `iss` is present and equal to
    /// `jwt_issuer` when configured; `aud` is present and contains `jwt_audience` when
    /// configured; `sub` is a non-empty string. The error says which check failed, is
    /// meant for the client, and never contains key material.
    pub fn verify(&self, token: &str) -> Result<JwtClaims, String> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "token is {} bytes long; this server accepts JWTs up to {MAX_TOKEN_LEN} bytes",
                token.len()
            ));
        }
        let header = TokenHeader::parse(token)?;
        let key = self.choose_key(&header)?;
        if header.alg != alg_name(key.alg) {
            let whose = match (&self.keys, &key.kid) {
                (Keys::Jwks(_), Some(kid)) => format!("key {}", printable(kid)),
                _ => "this server".to_string(),
            };
            return Err(format!(
                "algorithm {} not accepted: {whose} verifies {} tokens",
                printable(&header.alg),
                alg_name(key.alg)
            ));
        }
        if header.crit {
            return Err(
                "token header lists critical extensions (crit) this server does not \
                        understand"
                    .to_string(),
            );
        }

        let mut validation = Validation::new(key.alg);
        validation.leeway = self.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.validate_aud = true;
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);

        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| describe_error(e.kind(), &header.alg, key.alg))?;
        let sub = match data.claims.get("sub") {
            None | Some(Value::Null) => {
                return Err(
                    "token has no sub claim: this server needs it as the username".to_string(),
                )
            }
            Some(Value::String(sub)) if sub.is_empty() => {
                return Err(
                    "token sub claim is empty: this server needs it as the username".to_string(),
                )
            }
            Some(Value::String(sub)) => sub.clone(),
            Some(_) => return Err("token sub claim is not a string".to_string()),
        };
        // Present and numeric: `decode` required and checked it.
        let exp_secs = match data.claims.get("exp") {
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().map(|f| f.round() as u64))
                .unwrap_or(0),
            _ => 0,
        };
        Ok(JwtClaims {
            sub,
            exp_ms: exp_secs.saturating_mul(1000),
        })
    }

    fn choose_key(&self, header: &TokenHeader) -> Result<&VerifyingKey, String> {
        let keys = match &self.keys {
            Keys::Single(key) => return Ok(key),
            Keys::Jwks(keys) => keys,
        };
        match &header.kid {
            Some(kid) => {
                if let Some(key) = keys.iter().find(|k| k.kid.as_deref() == Some(kid.as_str())) {
                    return Ok(key);
                }
                match keys.as_slice() {
                    [only] if only.kid.is_none() => Ok(only),
                    _ => Err(format!(
                        "token kid {} is not in this server's JWKS (jwt_jwks_path): the token \
                         was signed with a key the server does not know",
                        printable(kid)
                    )),
                }
            }
            None => match keys.as_slice() {
                [only] => Ok(only),
                _ => Err(format!(
                    "token has no kid header, and this server's JWKS has {} keys: the token \
                     must name its key with kid",
                    keys.len()
                )),
            },
        }
    }
}

/// The header fields looked at before verification.
struct TokenHeader {
    alg: String,
    kid: Option<String>,
    crit: bool,
}

impl TokenHeader {
    /// Reads the header without trusting it: only to pick the key and refuse the
    /// algorithm early with a clear message. `jsonwebtoken::decode` re-reads it.
    fn parse(token: &str) -> Result<TokenHeader, String> {
        const SHAPE: &str =
            "malformed token: a JWT is three base64url parts separated by dots (header.claims.signature)";
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SHAPE.to_string());
        };
        let json = base64url_decode(header).ok_or_else(|| SHAPE.to_string())?;
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&json) else {
            return Err("malformed token: its header is not a JSON object".to_string());
        };
        let alg = match fields.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err("malformed token: its header has no alg".to_string()),
        };
        let kid = match fields.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err("malformed token: its header kid is not a string".to_string()),
        };
        Ok(TokenHeader {
            alg,
            kid,
            crit: fields.contains_key("crit"),
        })
    }
}

/// Unpadded base64url (RFC 7515 §2), as used in JWTs; `None` on anything else.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The client-facing message for a failed `jsonwebtoken::decode`.
fn describe_error(kind: &ErrorKind, header_alg: &str, alg: Algorithm) -> String {
    match kind {
        ErrorKind::InvalidSignature => {
            "signature does not verify: the token was not signed with this server's key, or \
             was altered"
                .to_string()
        }
        ErrorKind::ExpiredSignature => "token expired".to_string(),
        ErrorKind::ImmatureSignature => {
            "token not valid yet (its nbf is in the future)".to_string()
        }
        ErrorKind::InvalidIssuer => {
            "token issuer does not match this server's jwt_issuer".to_string()
        }
        ErrorKind::InvalidAudience => {
            "token audience does not match this server's jwt_audience".to_string()
        }
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => {
                "token has no valid exp claim: this server accepts only tokens that expire (exp, in \
                 seconds since the Unix epoch)".to_string()
            }
            "iss" => "token has no iss claim, and this server requires its jwt_issuer".to_string(),
            "aud" => {
                "token has no aud claim, and this server requires its jwt_audience".to_string()
            }
            other => format!("token has no {} claim", printable(other)),
        },
        ErrorKind::InvalidClaimFormat(claim) if claim == "exp" || claim == "nbf" => format!(
            "token {claim} claim is malformed: it must be a NumericDate (seconds since the Unix \
             epoch)"
        ),
        ErrorKind::InvalidClaimFormat(claim) => {
            format!("token {} claim is malformed", printable(claim))
        }
        ErrorKind::InvalidAlgorithm => format!(
            "algorithm {} not accepted: this server verifies {} tokens",
            printable(header_alg),
            alg_name(alg)
        ),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => format!("malformed token: {}", printable(&kind_text(kind))),
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidKeyFormat => {
            format!(
                "this server's {} key cannot verify tokens; tell its operator to check the JWT \
                 key in [security]",
                alg_name(alg)
            )
        }
        _ => format!("token rejected: {}", printable(&kind_text(kind))),
    }
}

fn kind_text(kind: &ErrorKind) -> String {
    jsonwebtoken::errors::Error::from(kind.clone()).to_string()
}

/// `alg` as written in a JWT header (`RS256`, `ES256`…).
fn alg_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// Untrusted text for an error message: printable ASCII only, at most 64 characters.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

fn read_key_file(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| match e.kind() {
        IoErrorKind::NotFound => {
            format!(
                "[security] {setting} {}: the file does not exist",
                path.display()
            )
        }
        _ => format!(
            "[security] {setting} {}: cannot read it: {e}",
            path.display()
        ),
    })
}

fn load_secret(path: &Path) -> Result<VerifyingKey, String> {
    let bytes = read_key_file("jwt_secret_file", path)?;
    let secret = bytes.trim_ascii_end();
    if secret.len() < MIN_SECRET_LEN {
        let what = if secret.is_empty() {
            "is empty".to_string()
        } else {
            format!("holds a {}-byte secret", secret.len())
        };
        return Err(format!(
            "[security] jwt_secret_file {}: the file {what}; HS256 needs at least \
             {MIN_SECRET_LEN} bytes. Make one with `openssl rand -base64 48 > {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(VerifyingKey {
        kid: None,
        alg: Algorithm::HS256,
        key: DecodingKey::from_secret(secret),
    })
}

fn load_public_key(path: &Path) -> Result<VerifyingKey, String> {
    let ctx = format!("[security] jwt_public_key_path {}", path.display());
    let bytes = read_key_file("jwt_public_key_path", path)?;
    let pem = match x509_parser::pem::parse_x509_pem(&bytes) {
        Ok((_, pem)) => pem,
        Err(_) => {
            return Err(format!(
                "{ctx}: not a PEM file (expected -----BEGIN PUBLIC KEY-----); convert a key with \
                 `openssl pkey -in <key> -pubout -out public.pem`"
            ))
        }
    };
    let (alg, key) = match pem.label.as_str() {
        "PUBLIC KEY" => spki_key(&ctx, &pem.contents)?,
        "RSA PUBLIC KEY" => {
            let (_, rsa) = RSAPublicKey::from_der(&pem.contents)
                .map_err(|_| format!("{ctx}: the RSA PUBLIC KEY block is not a valid RSA key"))?;
            check_rsa_size(&ctx, rsa.modulus)?;
            (Algorithm::RS256, DecodingKey::from_rsa_der(&pem.contents))
        }
        "CERTIFICATE" => {
            let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
                .map_err(|e| format!("{ctx}: the CERTIFICATE block is not valid X.509: {e}"))?;
            spki_key(&ctx, cert.public_key().raw)?
        }
        label if label.contains("PRIVATE KEY") => {
            return Err(format!(
                "{ctx}: this is a private key; the server needs only the public key: \
                 `openssl pkey -in <key> -pubout -out public.pem`"
            ))
        }
        label => {
            return Err(format!(
                "{ctx}: the PEM block is {}, expected PUBLIC KEY",
                printable(label)
            ))
        }
    };
    Ok(VerifyingKey {
        kid: None,
        alg,
        key,
    })
}

/// The algorithm and key of a DER SubjectPublicKeyInfo.
fn spki_key(ctx: &str, der: &[u8]) -> Result<(Algorithm, DecodingKey), String> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(der)
        .map_err(|_| format!("{ctx}: the public key is not a valid SubjectPublicKeyInfo"))?;
    let data: &[u8] = spki.subject_public_key.data.as_ref();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_RSA => {
            let (_, rsa) = RSAPublicKey::from_der(data)
                .map_err(|_| format!("{ctx}: the RSA public key is malformed"))?;
            check_rsa_size(ctx, rsa.modulus)?;
            Ok((Algorithm::RS256, DecodingKey::from_rsa_der(data)))
        }
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            let (alg, point_len) = match curve.as_deref() {
                Some(OID_P256) => (Algorithm::ES256, 65),
                Some(OID_P384) => (Algorithm::ES384, 97),
                other => {
                    return Err(format!(
                        "{ctx}: an EC key on curve {}: only P-256 (ES256) and P-384 (ES384) are \
                         supported",
                        other.unwrap_or("(unnamed)")
                    ))
                }
            };
            if data.len() != point_len || data.first() != Some(&4) {
                return Err(format!(
                    "{ctx}: the EC public key is not an uncompressed {} point",
                    if alg == Algorithm::ES256 {
                        "P-256"
                    } else {
                        "P-384"
                    }
                ));
            }
            Ok((alg, DecodingKey::from_ec_der(data)))
        }
        OID_ED25519 => Err(format!(
            "{ctx}: Ed25519 keys are not supported: use an RSA (RS256) or EC P-256 (ES256) key"
        )),
        oid => Err(format!(
            "{ctx}: not a supported key (algorithm {oid}): use an RSA (RS256) or EC P-256 \
             (ES256) public key"
        )),
    }
}

/// Bits in a big-endian unsigned integer.
fn bit_len(n: &[u8]) -> usize {
    let n = match n.iter().position(|&b| b != 0) {
        Some(start) => &n[start..],
        None => return 0,
    };
    (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize)
}

fn check_rsa_size(ctx: &str, modulus: &[u8]) -> Result<(), String> {
    let bits = bit_len(modulus);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(format!(
            "{ctx}: the RSA key is {bits} bits; RS256 verification needs {RSA_MIN_BITS} to \
             {RSA_MAX_BITS} bits"
        ));
    }
    Ok(())
}

fn load_jwks(path: &Path) -> Result<Vec<VerifyingKey>, String> {
    let ctx = format!("[security] jwt_jwks_path {}", path.display());
    let bytes = read_key_file("jwt_jwks_path", path)?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!("{ctx}: not JSON ({e}); a JWKS file looks like {{\"keys\": [{{\"kty\": ...}}]}}")
    })?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(format!(
            "{ctx}: not a JWKS: it has no \"keys\" array (a JWKS file looks like \
             {{\"keys\": [{{\"kty\": ...}}]}})"
        ));
    };
    if entries.is_empty() {
        return Err(format!("{ctx}: the JWKS has no keys"));
    }
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    let mut kids = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let name = match entry.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("key {i} (kid {})", printable(kid)),
            None => format!("key {i}"),
        };
        match jwks_key(entry) {
            Ok(key) => {
                if let Some(kid) = &key.kid {
                    if !kids.insert(kid.clone()) {
                        return Err(format!(
                            "{ctx}: two keys have kid {}: key ids must be unique",
                            printable(kid)
                        ));
                    }
                }
                keys.push(key);
            }
            Err(why) => {
                tracing::warn!("{ctx}: {name} skipped: {why}");
                skipped.push(format!("{name}: {why}"));
            }
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "{ctx}: no usable key in the JWKS ({}); it needs an RSA or EC P-256/P-384 signing key",
            skipped.join("; ")
        ));
    }
    if keys.len() > 1 && keys.iter().any(|k| k.kid.is_none()) {
        return Err(format!(
            "{ctx}: with several keys, every key needs a kid (tokens choose their key by kid)"
        ));
    }
    Ok(keys)
}

/// One JWK as a verifying key, or why it is not usable.
fn jwks_key(entry: &Value) -> Result<VerifyingKey, String> {
    let jwk: Jwk =
        serde_json::from_value(entry.clone()).map_err(|e| format!("not a valid JWK: {e}"))?;
    if let Some(PublicKeyUse::Encryption) = jwk.common.public_key_use {
        return Err("it is for encryption (\"use\": \"enc\")".to_string());
    }
    let declared = match entry.get("alg") {
        None | Some(Value::Null) => None,
        Some(Value::String(alg)) => Some(
            alg.parse::<Algorithm>()
                .map_err(|_| format!("unsupported alg {}", printable(alg)))?,
        ),
        Some(_) => return Err("its alg is not a string".to_string()),
    };
    let bad = |e: jsonwebtoken::errors::Error| format!("malformed key parameters: {e}");
    let (alg, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let alg = declared.unwrap_or(Algorithm::RS256);
            if alg.family() != jsonwebtoken::AlgorithmFamily::Rsa {
                return Err(format!("alg {} does not fit an RSA key", alg_name(alg)));
            }
            let key = DecodingKey::from_rsa_components(&params.n, &params.e).map_err(bad)?;
            if let DecodingKeyKind::RsaModulusExponent { n, .. } = key.kind() {
                let bits = bit_len(n);
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(format!(
                        "the RSA key is {bits} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} are supported"
                    ));
                }
            }
            (alg, key)
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let (alg, coord_len) = match params.curve {
                EllipticCurve::P256 => (Algorithm::ES256, 32),
                EllipticCurve::P384 => (Algorithm::ES384, 48),
                _ => {
                    return Err(
                        "EC keys on curves other than P-256 and P-384 are not supported".into(),
                    )
                }
            };
            if declared.is_some_and(|d| d != alg) {
                return Err(format!(
                    "alg {} does not fit an EC key on this curve ({} expected)",
                    declared.map(alg_name).unwrap_or_default(),
                    alg_name(alg)
                ));
            }
            let key = DecodingKey::from_ec_components(&params.x, &params.y).map_err(bad)?;
            if key.try_get_as_bytes().map(<[u8]>::len).ok() != Some(1 + 2 * coord_len) {
                return Err("the EC key's x and y have the wrong length for its curve".to_string());
            }
            (alg, key)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(
                "symmetric (oct) keys are not accepted from a JWKS; use jwt_secret_file \
                        for HS256"
                    .to_string(),
            )
        }
        _ => return Err("unsupported key type: use RSA or EC keys".to_string()),
    };
    Ok(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
    use serde_json::json;
    use std::path::PathBuf;
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

    fn now() -> u64 {
        get_current_timestamp()
    }

    fn write(dir: &tempfile::TempDir, name: &str, contents: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn config() -> SecurityConfig {
        SecurityConfig {
            jwt_auth: true,
            ..SecurityConfig::default()
        }
    }

    fn hs_verifier(
        dir: &tempfile::TempDir,
        tweak: impl FnOnce(&mut SecurityConfig),
    ) -> JwtVerifier {
        let mut c = config();
        c.jwt_secret_file = Some(write(dir, "jwt.secret", format!("{SECRET}\n").as_bytes()));
        tweak(&mut c);
        JwtVerifier::from_config(&c).unwrap().unwrap()
    }

    fn hs_token(secret: &str, claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn good_claims() -> Value {
        json!({"sub": "alice", "exp": now() + 3600, "iat": now()})
    }

    struct RsaKey {
        private_pem: String,
        public_pem: String,
    }

    fn rsa_key() -> RsaKey {
        let kp =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        RsaKey {
            private_pem: kp.serialize_pem(),
            public_pem: kp.public_key_pem(),
        }
    }

    fn ec_key() -> RsaKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        RsaKey {
            private_pem: kp.serialize_pem(),
            public_pem: kp.public_key_pem(),
        }
    }

    fn pem_verifier(dir: &tempfile::TempDir, public_pem: &str) -> JwtVerifier {
        let mut c = config();
        c.jwt_public_key_path = Some(write(dir, "jwt.pub.pem", public_pem.as_bytes()));
        JwtVerifier::from_config(&c).unwrap().unwrap()
    }

    fn sign(alg: Algorithm, kid: Option<&str>, private_pem: &str, claims: &Value) -> String {
        let key = match alg.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        }
        .unwrap();
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        encode(&header, claims, &key).unwrap()
    }

    fn jwk(public_pem: &str, alg: Algorithm, kid: Option<&str>) -> Value {
        let key = match alg.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(public_pem.as_bytes()),
            _ => DecodingKey::from_ec_pem(public_pem.as_bytes()),
        }
        .unwrap();
        let mut jwk = Jwk::from_decoding_key(&key, Some(alg)).unwrap();
        jwk.common.key_id = kid.map(str::to_string);
        serde_json::to_value(jwk).unwrap()
    }

    fn jwks_verifier(dir: &tempfile::TempDir, keys: Vec<Value>) -> Result<JwtVerifier, String> {
        let mut c = config();
        let doc = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        c.jwt_jwks_path = Some(write(dir, "jwks.json", &doc));
        JwtVerifier::from_config(&c).map(Option::unwrap)
    }

    #[test]
    fn disabled_gives_none() {
        assert!(JwtVerifier::from_config(&SecurityConfig::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn hs256_good_token() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |_| {});
        let claims = good_claims();
        let verified = v.verify(&hs_token(SECRET, &claims)).unwrap();
        assert_eq!(verified.sub, "alice");
        assert_eq!(verified.exp_ms, claims["exp"].as_u64().unwrap() * 1000);
        let debug = format!("{v:?}");
        assert!(
            debug.contains("HS256") && !debug.contains(SECRET),
            "{debug}"
        );
    }

    #[test]
    fn hs256_forged_token() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |_| {});
        let other = "another-secret-of-at-least-32-bytes-long!!";
        let err = v.verify(&hs_token(other, &good_claims())).unwrap_err();
        assert!(err.starts_with("signature does not verify"), "{err}");
        assert!(!err.contains(SECRET) && !err.contains(other));
        // Altered claims under the original signature.
        let token = hs_token(SECRET, &good_claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = hs_token(SECRET, &json!({"sub": "root", "exp": now() + 3600}));
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            forged_claims.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert!(v
            .verify(&forged)
            .unwrap_err()
            .starts_with("signature does not verify"));
    }

    #[test]
    fn expired_token() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |c| c.jwt_leeway = Duration::from_secs(30));
        let expired = json!({"sub": "alice", "exp": now() - 120});
        let err = v.verify(&hs_token(SECRET, &expired)).unwrap_err();
        assert_eq!(err, "token expired");
        // Within the leeway.
        let just = json!({"sub": "alice", "exp": now() - 5});
        assert_eq!(v.verify(&hs_token(SECRET, &just)).unwrap().sub, "alice");
    }

    #[test]
    fn not_yet_valid_token() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |_| {});
        let claims = json!({"sub": "alice", "exp": now() + 7200, "nbf": now() + 3600});
        let err = v.verify(&hs_token(SECRET, &claims)).unwrap_err();
        assert!(err.contains("not valid yet"), "{err}");
        let claims = json!({"sub": "alice", "exp": now() + 7200, "nbf": now() - 10});
        assert_eq!(v.verify(&hs_token(SECRET, &claims)).unwrap().sub, "alice");
    }

    #[test]
    fn audience() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |c| c.jwt_audience = Some("themisdb".into()));
        let token = |aud: Value| {
            hs_token(
                SECRET,
                &json!({"sub": "alice", "exp": now() + 60, "aud": aud}),
            )
        };
        assert_eq!(v.verify(&token(json!("themisdb"))).unwrap().sub, "alice");
        assert_eq!(
            v.verify(&token(json!(["other", "themisdb"]))).unwrap().sub,
            "alice"
        );
        let err = v.verify(&token(json!("other"))).unwrap_err();
        assert_eq!(
            err,
            "token audience does not match this server's jwt_audience"
        );
        assert!(v.verify(&token(json!(["a", "b"]))).is_err());
        let err = v.verify(&hs_token(SECRET, &good_claims())).unwrap_err();
        assert!(err.contains("no aud claim"), "{err}");
        // Without jwt_audience, aud is not checked.
        let dir2 = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir2, |_| {});
        assert_eq!(v.verify(&token(json!("anything"))).unwrap().sub, "alice");
    }

    #[test]
    fn issuer() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |c| {
            c.jwt_issuer = Some("https://idp.example.com".into())
        });
        let token = |iss: &str| {
            hs_token(
                SECRET,
                &json!({"sub": "alice", "exp": now() + 60, "iss": iss}),
            )
        };
        assert_eq!(
            v.verify(&token("https://idp.example.com")).unwrap().sub,
            "alice"
        );
        let err = v.verify(&token("https://evil.example.com")).unwrap_err();
        assert_eq!(err, "token issuer does not match this server's jwt_issuer");
        let err = v.verify(&hs_token(SECRET, &good_claims())).unwrap_err();
        assert!(err.contains("no iss claim"), "{err}");
    }

    #[test]
    fn missing_exp() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |_| {});
        let err = v
            .verify(&hs_token(SECRET, &json!({"sub": "alice"})))
            .unwrap_err();
        assert!(err.contains("no valid exp claim"), "{err}");
        let err = v
            .verify(&hs_token(
                SECRET,
                &json!({"sub": "alice", "exp": "tomorrow"}),
            ))
            .unwrap_err();
        assert!(err.contains("no valid exp claim"), "{err}");
    }

    #[test]
    fn missing_or_empty_sub() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |_| {});
        let err = v
            .verify(&hs_token(SECRET, &json!({"exp": now() + 60})))
            .unwrap_err();
        assert!(err.starts_with("token has no sub claim"), "{err}");
        let err = v
            .verify(&hs_token(SECRET, &json!({"sub": "", "exp": now() + 60})))
            .unwrap_err();
        assert!(err.contains("sub claim is empty"), "{err}");
        let err = v
            .verify(&hs_token(SECRET, &json!({"sub": 7, "exp": now() + 60})))
            .unwrap_err();
        assert!(err.contains("not a string"), "{err}");
    }

    #[test]
    fn malformed_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |_| {});
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.e30.x", "e30.e30.x"] {
            let err = v.verify(token).unwrap_err();
            assert!(err.starts_with("malformed token"), "{token}: {err}");
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(v.verify(&huge).unwrap_err().contains("bytes long"));
    }

    #[test]
    fn alg_none_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = hs_verifier(&dir, |_| {});
        // {"alg":"none","typ":"JWT"} . {"sub":"alice","exp":<far future>} . (empty)
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let claims = hs_token(SECRET, &good_claims());
        let claims = claims.split('.').nth(1).unwrap();
        let err = v.verify(&format!("{header}.{claims}.")).unwrap_err();
        assert_eq!(
            err,
            "algorithm none not accepted: this server verifies HS256 tokens"
        );
    }

    #[test]
    fn alg_confusion_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = rsa_key();
        let v = pem_verifier(&dir, &rsa.public_pem);
        // The classic attack: HS256 with the RSA public key as the shared secret.
        let forged = hs_token(&rsa.public_pem, &good_claims());
        let err = v.verify(&forged).unwrap_err();
        assert_eq!(
            err,
            "algorithm HS256 not accepted: this server verifies RS256 tokens"
        );
        // And the reverse: an RS256 token against an HS256 server.
        let dir2 = tempfile::tempdir().unwrap();
        let hs = hs_verifier(&dir2, |_| {});
        let rs = sign(Algorithm::RS256, None, &rsa.private_pem, &good_claims());
        let err = hs.verify(&rs).unwrap_err();
        assert_eq!(
            err,
            "algorithm RS256 not accepted: this server verifies HS256 tokens"
        );
        // Another member of the family is not accepted either.
        let ps = sign(Algorithm::PS256, None, &rsa.private_pem, &good_claims());
        assert!(v
            .verify(&ps)
            .unwrap_err()
            .starts_with("algorithm PS256 not accepted"));
    }

    #[test]
    fn rs256_good_token() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = rsa_key();
        let v = pem_verifier(&dir, &rsa.public_pem);
        let token = sign(Algorithm::RS256, None, &rsa.private_pem, &good_claims());
        assert_eq!(v.verify(&token).unwrap().sub, "alice");
        // A token from another RSA key does not verify.
        let other = rsa_key();
        let token = sign(Algorithm::RS256, None, &other.private_pem, &good_claims());
        assert!(v
            .verify(&token)
            .unwrap_err()
            .starts_with("signature does not verify"));
    }

    #[test]
    fn es256_good_token() {
        let dir = tempfile::tempdir().unwrap();
        let ec = ec_key();
        let v = pem_verifier(&dir, &ec.public_pem);
        let token = sign(Algorithm::ES256, None, &ec.private_pem, &good_claims());
        assert_eq!(v.verify(&token).unwrap().sub, "alice");
        let other = ec_key();
        let token = sign(Algorithm::ES256, None, &other.private_pem, &good_claims());
        assert!(v
            .verify(&token)
            .unwrap_err()
            .starts_with("signature does not verify"));
        let rsa = rsa_key();
        let token = sign(Algorithm::RS256, None, &rsa.private_pem, &good_claims());
        assert_eq!(
            v.verify(&token).unwrap_err(),
            "algorithm RS256 not accepted: this server verifies ES256 tokens"
        );
    }

    #[test]
    fn public_key_from_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["idp.example.com".to_string()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let v = pem_verifier(&dir, &cert.pem());
        let token = sign(Algorithm::ES256, None, &kp.serialize_pem(), &good_claims());
        assert_eq!(v.verify(&token).unwrap().sub, "alice");
    }

    #[test]
    fn jwks() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = rsa_key();
        let ec = ec_key();
        let v = jwks_verifier(
            &dir,
            vec![
                jwk(&rsa.public_pem, Algorithm::RS256, Some("r1")),
                jwk(&ec.public_pem, Algorithm::ES256, Some("e1")),
                // Skipped: an encryption key and a symmetric key.
                json!({"kty": "RSA", "use": "enc", "kid": "x", "n": "AQAB", "e": "AQAB"}),
                json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}),
            ],
        )
        .unwrap();
        let rs = sign(
            Algorithm::RS256,
            Some("r1"),
            &rsa.private_pem,
            &good_claims(),
        );
        assert_eq!(v.verify(&rs).unwrap().sub, "alice");
        let es = sign(
            Algorithm::ES256,
            Some("e1"),
            &ec.private_pem,
            &good_claims(),
        );
        assert_eq!(v.verify(&es).unwrap().sub, "alice");
        // The kid picks the key, and the key fixes the algorithm.
        let wrong = sign(
            Algorithm::RS256,
            Some("e1"),
            &rsa.private_pem,
            &good_claims(),
        );
        assert_eq!(
            v.verify(&wrong).unwrap_err(),
            "algorithm RS256 not accepted: key e1 verifies ES256 tokens"
        );
        let unknown = sign(
            Algorithm::RS256,
            Some("r2"),
            &rsa.private_pem,
            &good_claims(),
        );
        assert!(v
            .verify(&unknown)
            .unwrap_err()
            .contains("kid r2 is not in this server's JWKS"));
        let skipped = sign(
            Algorithm::RS256,
            Some("x"),
            &rsa.private_pem,
            &good_claims(),
        );
        assert!(v.verify(&skipped).is_err());
        let no_kid = sign(Algorithm::RS256, None, &rsa.private_pem, &good_claims());
        assert!(v.verify(&no_kid).unwrap_err().contains("no kid header"));
        let hs = hs_token("c2VjcmV0", &good_claims());
        assert!(v.verify(&hs).is_err());
    }

    #[test]
    fn jwks_with_one_key_needs_no_kid() {
        let dir = tempfile::tempdir().unwrap();
        let ec = ec_key();
        let v = jwks_verifier(&dir, vec![jwk(&ec.public_pem, Algorithm::ES256, None)]).unwrap();
        let token = sign(Algorithm::ES256, None, &ec.private_pem, &good_claims());
        assert_eq!(v.verify(&token).unwrap().sub, "alice");
        let token = sign(
            Algorithm::ES256,
            Some("whatever"),
            &ec.private_pem,
            &good_claims(),
        );
        assert_eq!(v.verify(&token).unwrap().sub, "alice");
    }

    #[test]
    fn jwks_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = jwks_verifier(&dir, vec![]).unwrap_err();
        assert!(
            err.contains("jwt_jwks_path") && err.contains("has no keys"),
            "{err}"
        );
        let err = jwks_verifier(&dir, vec![json!({"kty": "oct", "k": "c2VjcmV0"})]).unwrap_err();
        assert!(err.contains("no usable key"), "{err}");
        let ec = ec_key();
        let err = jwks_verifier(
            &dir,
            vec![
                jwk(&ec.public_pem, Algorithm::ES256, Some("a")),
                jwk(&ec.public_pem, Algorithm::ES256, Some("a")),
            ],
        )
        .unwrap_err();
        assert!(err.contains("two keys have kid a"), "{err}");
        let mut c = config();
        c.jwt_jwks_path = Some(write(&dir, "bad.json", b"{\"not\": 1}"));
        let err = JwtVerifier::from_config(&c).unwrap_err();
        assert!(err.contains("no \"keys\" array"), "{err}");
        c.jwt_jwks_path = Some(write(&dir, "bad.json", b"-----BEGIN"));
        assert!(JwtVerifier::from_config(&c)
            .unwrap_err()
            .contains("not JSON"));
    }

    #[test]
    fn secret_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.jwt_secret_file = Some(write(&dir, "short.secret", b"too short\n"));
        let err = JwtVerifier::from_config(&c).unwrap_err();
        assert!(
            err.contains("short.secret") && err.contains("9-byte"),
            "{err}"
        );
        assert!(err.contains("openssl rand -base64 48"), "{err}");
        assert!(!err.contains("too short"), "{err}");
        c.jwt_secret_file = Some(write(&dir, "empty.secret", b"\n"));
        assert!(JwtVerifier::from_config(&c)
            .unwrap_err()
            .contains("is empty"));
        c.jwt_secret_file = Some(dir.path().join("missing.secret"));
        let err = JwtVerifier::from_config(&c).unwrap_err();
        assert!(
            err.contains("missing.secret") && err.contains("does not exist"),
            "{err}"
        );
    }

    #[test]
    fn public_key_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.jwt_public_key_path = Some(write(&dir, "key.pem", b"hello"));
        let err = JwtVerifier::from_config(&c).unwrap_err();
        assert!(
            err.contains("key.pem") && err.contains("not a PEM file"),
            "{err}"
        );
        let ec = ec_key();
        c.jwt_public_key_path = Some(write(&dir, "key.pem", ec.private_pem.as_bytes()));
        let err = JwtVerifier::from_config(&c).unwrap_err();
        assert!(
            err.contains("private key") && err.contains("-pubout"),
            "{err}"
        );
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        c.jwt_public_key_path = Some(write(&dir, "key.pem", p384.public_key_pem().as_bytes()));
        let v = JwtVerifier::from_config(&c).unwrap().unwrap();
        let token = sign(
            Algorithm::ES384,
            None,
            &p384.serialize_pem(),
            &good_claims(),
        );
        assert_eq!(v.verify(&token).unwrap().sub, "alice");
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        c.jwt_public_key_path = Some(write(&dir, "key.pem", ed.public_key_pem().as_bytes()));
        let err = JwtVerifier::from_config(&c).unwrap_err();
        assert!(err.contains("Ed25519 keys are not supported"), "{err}");
        c.jwt_public_key_path = Some(dir.path().join("nope.pem"));
        assert!(JwtVerifier::from_config(&c)
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn key_source_must_be_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = JwtVerifier::from_config(&config()).unwrap_err();
        assert!(err.contains("no JWT key is configured"), "{err}");
        let mut c = config();
        c.jwt_secret_file = Some(write(&dir, "s", SECRET.as_bytes()));
        c.jwt_jwks_path = Some(write(&dir, "j", b"{}"));
        assert!(JwtVerifier::from_config(&c)
            .unwrap_err()
            .contains("more than one"));
    }

    #[test]
    fn base64url() {
        assert_eq!(base64url_decode("e30").unwrap(), b"{}");
        assert_eq!(base64url_decode("").unwrap(), b"");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(base64url_decode("e30=").is_none());
        assert!(base64url_decode("a").is_none());
        assert!(base64url_decode("a+b/").is_none());
    }
}
