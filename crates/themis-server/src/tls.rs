//! TLS for the wire protocol: loading the certificate, key and client CA named in
//! `[wire_protocol]`, and the rustls server configuration built from them.
//!
//! Everything is checked at startup, so a server that starts can serve TLS: a
//! missing, unreadable or non-PEM file, a file without a certificate or key, a key
//! that does not belong to the certificate, and a certificate outside its validity
//! period each stop the start with a [`TlsError`] naming the setting, the file and
//! the problem. [`TlsReloader`] runs the same checks again to rotate certificates
//! without a restart (SIGHUP, changed files); when they fail, the old configuration
//! keeps serving.
//!
//! Invariants:
//! * One crypto backend, aws-lc-rs, and its default cipher suites, which are exactly
//!   the strong set the contract asks for: TLS 1.3's AEAD suites (AES-GCM and
//!   ChaCha20-Poly1305) and, for TLS 1.2, only ECDHE key exchange with AES-GCM or
//!   ChaCha20-Poly1305 (no RSA key exchange, no CBC, no SHA-1 MACs). A unit test
//!   keeps that true across rustls upgrades.
//! * Nothing older than TLS 1.2 is ever negotiated; `tls_min_version = TLSv1.3`
//!   drops TLS 1.2 too.
//! * With mTLS, client certificates are verified by webpki against
//!   `tls_ca_cert_path` only (chain, validity dates, key usage); with
//!   `tls_require_client_cert = false` a client may present none, but one it
//!   presents must still verify.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsConfig, TlsVersion};

/// First byte of a TLS record carrying a handshake message (a ClientHello): how the
/// shared port tells TLS from the wire protocol, whose frames start with `0xDB`.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why TLS could not be set up. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by a setting is missing, unreadable or unusable.
    #[error("[wire_protocol] {setting} = {}: {problem}", path.display())]
    File {
        setting: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// A setting the TLS configuration needs is not set (normally caught by
    /// `Config::validate`).
    #[error("[wire_protocol] {0} is not set but TLS is enabled; point it at a PEM file")]
    Missing(&'static str),
    /// A reload was asked of a server that does not serve TLS.
    #[error("TLS is not enabled ([wire_protocol] enable_tls = false): nothing to reload")]
    NotEnabled,
    /// rustls refused the assembled configuration.
    #[error("TLS configuration refused by rustls: {0}")]
    Rustls(String),
}

/// The cryptographic provider every TLS connection of this server uses.
pub fn provider() -> CryptoProvider {
    // aws-lc-rs's default suites are already the strong set (see the module doc and
    // `only_strong_cipher_suites`), so they are used as they are.
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Builds the acceptor for `[wire_protocol]`'s TLS settings, checking every file.
pub fn acceptor(cfg: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    server_config(cfg).map(tokio_rustls::TlsAcceptor::from)
}

/// The rustls server configuration for `cfg`, with every file loaded and checked.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_path = cfg
        .cert_path
        .as_deref()
        .ok_or(TlsError::Missing("tls_cert_path"))?;
    let key_path = cfg
        .key_path
        .as_deref()
        .ok_or(TlsError::Missing("tls_key_path"))?;
    let provider = Arc::new(provider());
    let certs = load_certs("tls_cert_path", cert_path)?;
    let key = load_key(key_path)?;
    check_key_matches(&provider, &certs, &key, cert_path, key_path)?;

    let versions: &[&'static rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = if cfg.mtls {
        let ca_path = cfg
            .ca_cert_path
            .as_deref()
            .ok_or(TlsError::Missing("tls_ca_cert_path"))?;
        let roots = load_roots(ca_path)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if cfg.require_client_cert {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier.build().map_err(|e| TlsError::File {
            setting: "tls_ca_cert_path",
            path: ca_path.to_path_buf(),
            problem: format!("cannot verify client certificates with it: {e}"),
        })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::File {
            setting: "tls_cert_path",
            path: cert_path.to_path_buf(),
            problem: format!("certificate and key are not usable together: {e}"),
        })?;
    Ok(Arc::new(config))
}

/// The serving TLS configuration, swappable while the server runs (certificate
/// rotation). Each accepted TLS connection reads the newest configuration once, in
/// [`Self::acceptor`]; established connections keep the one they were accepted with.
///
/// [`Self::reload`] runs the same load-and-check path as startup: when the new files
/// are not usable, the old configuration keeps serving and the failure is counted.
pub struct TlsReloader {
    cfg: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    /// The files' (modification time, length) at the last reload attempt, for
    /// [`Self::reload_if_changed`].
    seen: Mutex<Vec<FileStamp>>,
    failures: AtomicU64,
}

/// What the watcher compares: a file's modification time and length (`None` when it
/// cannot be read).
type FileStamp = Option<(SystemTime, u64)>;

impl TlsReloader {
    /// Loads and checks `cfg`'s files, as at startup.
    pub fn new(cfg: &TlsConfig) -> Result<Self, TlsError> {
        let seen = stamps(cfg);
        let config = server_config(cfg)?;
        Ok(Self {
            cfg: cfg.clone(),
            current: RwLock::new(config),
            seen: Mutex::new(seen),
            failures: AtomicU64::new(0),
        })
    }

    /// An acceptor with the newest configuration.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Reloads the certificate, key and CA files. On success new connections get the
    /// new configuration; on failure the old one keeps serving, the failure is logged
    /// at `warn` and counted, and the error says which file and what is wrong.
    pub fn reload(&self) -> Result<(), TlsError> {
        // Stamps are taken before reading, so a file still being written when it is
        // read changes again afterwards and the watcher retries it.
        let stamps = stamps(&self.cfg);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        match server_config(&self.cfg) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
                tracing::info!("TLS certificates reloaded; new connections use them");
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %e,
                    "TLS reload failed; the previous certificate keeps serving"
                );
                Err(e)
            }
        }
    }

    /// [`Self::reload`] when a file's modification time or length changed since the
    /// last attempt; `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = stamps(&self.cfg);
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return None;
        }
        Some(self.reload())
    }

    /// How many reloads failed since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

fn stamps(cfg: &TlsConfig) -> Vec<FileStamp> {
    [&cfg.cert_path, &cfg.key_path, &cfg.ca_cert_path]
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(path.as_deref()?).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// Reads a file named by `setting`, saying which and why when it cannot.
fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        setting,
        path: path.to_path_buf(),
        problem: match e.kind() {
            std::io::ErrorKind::NotFound => {
                "file not found: create it (see docs/security.md) or fix the path".to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                "cannot read it: permission denied (the server's user needs read access)"
                    .to_string()
            }
            _ => format!("cannot read it: {e}"),
        },
    })
}

fn file_error(setting: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::File {
        setting,
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Every certificate in a PEM file; at least one, each within its validity period.
fn load_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(setting, path, format!("not a valid PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            setting,
            path,
            "no certificate in it: expected a PEM block \"-----BEGIN CERTIFICATE-----\" \
             (is this the key file?)",
        ));
    }
    let now = unix_now();
    for (i, cert) in certs.iter().enumerate() {
        let which = if i == 0 {
            "the certificate".to_string()
        } else {
            format!("certificate #{} in the file", i + 1)
        };
        let facts = cert_facts(cert).map_err(|e| {
            file_error(
                setting,
                path,
                format!("{which} is not a valid X.509 certificate: {e}"),
            )
        })?;
        let (not_before, not_after) = (facts.not_before, facts.not_after);
        if i == 0 && setting == "tls_cert_path" {
            if !facts.v3 {
                return Err(file_error(
                    setting,
                    path,
                    format!(
                        "{which} is X.509 version 1 (no extensions, so no subjectAltName), \
                         which TLS clients refuse; plain `openssl x509 -req` makes such \
                         certificates. {SERVER_CERT_HINT}"
                    ),
                ));
            }
            if !facts.has_san {
                return Err(file_error(
                    setting,
                    path,
                    format!(
                        "{which} has no subjectAltName, so clients cannot match it to \
                         the server's name or address (the CN is not used). \
                         {SERVER_CERT_HINT}"
                    ),
                ));
            }
        }
        if now > not_after {
            return Err(file_error(
                setting,
                path,
                format!(
                    "{which} expired on {} (valid from {}): issue a new one",
                    date_text(not_after),
                    date_text(not_before)
                ),
            ));
        }
        if now < not_before {
            return Err(file_error(
                setting,
                path,
                format!(
                    "{which} is not valid yet: its validity starts {} (is the clock right?)",
                    date_text(not_before)
                ),
            ));
        }
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const SETTING: &str = "tls_key_path";
    let bytes = read(SETTING, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => file_error(
            SETTING,
            path,
            "no private key in it: expected a PEM block \"-----BEGIN PRIVATE KEY-----\" \
             (or RSA PRIVATE KEY / EC PRIVATE KEY; is this the certificate file?)",
        ),
        e => file_error(SETTING, path, format!("not a valid PEM file: {e}")),
    })
}

/// The CA certificates that sign client certificates.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    const SETTING: &str = "tls_ca_cert_path";
    let mut roots = RootCertStore::empty();
    for cert in load_certs(SETTING, path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(SETTING, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Fails unless the key can sign and is the one the first certificate was issued for.
fn check_key_matches(
    provider: &CryptoProvider,
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TlsError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            file_error(
                "tls_key_path",
                key_path,
                format!("unusable private key: {e}"),
            )
        })?;
    let certified = CertifiedKey::new(certs.to_vec(), signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(file_error(
                "tls_key_path",
                key_path,
                format!(
                    "the private key does not match the certificate in {} (they are \
                     from different key pairs): use the key the certificate was issued for",
                    cert_path.display()
                ),
            ))
        }
        Err(e) => Err(file_error(
            "tls_cert_path",
            cert_path,
            format!(
                "the certificate cannot be used: {e} (an X.509 v1 certificate, as plain \
                 `openssl x509 -req` may make, is not accepted: sign it with \
                 `-extfile` adding subjectAltName, see docs/security.md)"
            ),
        )),
    }
}

/// How to make a server certificate that works, for errors about one that does not.
const SERVER_CERT_HINT: &str = "Sign it with the server's names and addresses: \
     `printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\\nextendedKeyUsage = serverAuth\\n' \
     > server-ext.cnf && openssl x509 -req -in server-req.pem -CA ca-cert.pem \
     -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 365 \
     -extfile server-ext.cnf` (see docs/security.md)";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One DER element: (tag, contents, the rest after it).
fn der_element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = input.split_first().ok_or("truncated DER")?;
    let (&first, rest) = rest.split_first().ok_or("truncated DER")?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad DER length");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated DER");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// What startup checks about a certificate.
struct CertFacts {
    /// `notBefore`, Unix seconds.
    not_before: i64,
    /// `notAfter`, Unix seconds.
    not_after: i64,
    /// X.509 v3 (the only version with extensions).
    v3: bool,
    /// Has a subjectAltName extension.
    has_san: bool,
}

/// A walk of `Certificate → TBSCertificate → [0] version, serial, signature, issuer,
/// validity, subject, subjectPublicKeyInfo, [1], [2], [3] extensions`: enough DER to
/// read the validity dates, the version and whether there is a subjectAltName,
/// without an X.509 parser.
fn cert_facts(cert: &CertificateDer<'_>) -> Result<CertFacts, &'static str> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = der_element(cert.as_ref())?;
    if tag != SEQUENCE {
        return Err("not a DER SEQUENCE");
    }
    let (tag, tbs, _) = der_element(certificate)?;
    if tag != SEQUENCE {
        return Err("no TBSCertificate");
    }
    let mut rest = tbs;
    let mut v3 = false;
    let (tag, version, after) = der_element(rest)?;
    if tag == 0xa0 {
        // explicit [0] Version ::= INTEGER { v1(0), v2(1), v3(2) }
        let (_, number, _) = der_element(version)?;
        v3 = number == [2];
        rest = after;
    }
    for _ in 0..3 {
        // serialNumber, signature, issuer
        rest = der_element(rest)?.2;
    }
    let (tag, validity, mut rest) = der_element(rest)?;
    if tag != SEQUENCE {
        return Err("no Validity");
    }
    let (tag1, t1, times) = der_element(validity)?;
    let (tag2, t2, _) = der_element(times)?;
    // subject, subjectPublicKeyInfo
    for _ in 0..2 {
        rest = der_element(rest)?.2;
    }
    let mut has_san = false;
    while !rest.is_empty() {
        let (tag, content, after) = der_element(rest)?;
        if tag == 0xa3 {
            // [3] EXPLICIT Extensions ::= SEQUENCE OF Extension { extnID OID, ... }
            let (_, mut extensions, _) = der_element(content)?;
            while !extensions.is_empty() {
                let (_, extension, next) = der_element(extensions)?;
                let (_, oid, _) = der_element(extension)?;
                has_san |= oid == [0x55, 0x1d, 0x11]; // 2.5.29.17 subjectAltName
                extensions = next;
            }
        }
        rest = after;
    }
    Ok(CertFacts {
        not_before: der_time(tag1, t1)?,
        not_after: der_time(tag2, t2)?,
        v3,
        has_san,
    })
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Result<i64, &'static str> {
    let digits = |s: &[u8]| -> Result<i64, &'static str> {
        s.iter().try_fold(0i64, |acc, &b| {
            if b.is_ascii_digit() {
                Ok(acc * 10 + (b - b'0') as i64)
            } else {
                Err("bad time in Validity")
            }
        })
    };
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return Err("unsupported time format in Validity"),
    };
    if rest[10] != b'Z' {
        return Err("validity time is not in UTC");
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let (h, m, s) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return Err("bad time in Validity");
    }
    Ok(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds.
fn date_text(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    #[test]
    fn only_strong_cipher_suites() {
        // TLS 1.3 suites are all AEAD (AES-GCM, ChaCha20-Poly1305); for TLS 1.2 only
        // ECDHE with AES-GCM or ChaCha20-Poly1305 may be offered.
        let p = provider();
        assert!(!p.cipher_suites.is_empty());
        for suite in &p.cipher_suites {
            let name = format!("{:?}", suite.suite());
            let strong = match suite.version().version {
                rustls::ProtocolVersion::TLSv1_3 => matches!(
                    suite.suite(),
                    CipherSuite::TLS13_AES_128_GCM_SHA256
                        | CipherSuite::TLS13_AES_256_GCM_SHA384
                        | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                ),
                rustls::ProtocolVersion::TLSv1_2 => {
                    name.starts_with("TLS_ECDHE_")
                        && (name.contains("_AES_128_GCM_")
                            || name.contains("_AES_256_GCM_")
                            || name.contains("_CHACHA20_POLY1305_"))
                }
                _ => false,
            };
            assert!(strong, "weak cipher suite offered: {name}");
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(date_text(0), "1970-01-01 00:00:00 UTC");
        let t = days_from_civil(2024, 2, 29) * 86_400 + 3661;
        assert_eq!(date_text(t), "2024-02-29 01:01:01 UTC");
        assert_eq!(
            der_time(0x17, b"491231235959Z"),
            der_time(0x18, b"20491231235959Z")
        );
        assert_eq!(
            der_time(0x17, b"500101000000Z").map(date_text).as_deref(),
            Ok("1950-01-01 00:00:00 UTC")
        );
        assert!(der_time(0x17, b"20240101000000Z").is_err());
    }

    #[test]
    fn validity_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2001, 2, 3);
        params.not_after = rcgen::date_time_ymd(2002, 3, 4);
        let cert = params.self_signed(&key).unwrap();
        let facts = cert_facts(cert.der()).unwrap();
        assert_eq!(date_text(facts.not_before), "2001-02-03 00:00:00 UTC");
        assert_eq!(date_text(facts.not_after), "2002-03-04 00:00:00 UTC");
        assert!(facts.v3 && facts.has_san);
        let no_san = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(!cert_facts(no_san.der()).unwrap().has_san);
        assert!(cert_facts(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])).is_err());
    }
}
