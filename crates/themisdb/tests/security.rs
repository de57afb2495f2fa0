//! Authentication methods and abuse limits, against the real server over raw frames:
//!
//! * each of the four auth methods (password, API key, JWT, client certificate) over
//!   TLS 1.2 and TLS 1.3 (tokio-rustls client pinned to one version);
//! * JWT refusals (forged, expired, wrong audience / issuer, `alg: none`, unknown
//!   user), HS256 and ES256 acceptance, session expiry bounded by the token's `exp`;
//! * API keys: shown once, revocation refuses logins and cuts open connections,
//!   expiry; disabled methods; session revocation and `drop_user`; key and token
//!   sessions cannot mint keys for their own user; a key of an earlier user of the
//!   same name is refused;
//! * changing one's own password takes the old one and ends one's other sessions;
//! * a revocation or `drop_user` while a login checks its password is honoured;
//! * failed-login throttling (lower bounds on the delays only), connections per
//!   address, the per-user request rate limit, and the audit log (kinds, usernames,
//!   and no secrets).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use common::{load_certs, Frame, Issued, TestCa, TestServer, ROOT_PASSWORD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost::Message;
use rcgen::KeyPair;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use serde_json::{json, Value};
use themis_proto::wire::{self, admin_request::Action, AuthMethod, ErrorCode, OpCode};
use themis_proto::{encode_frame, FrameCodec, TypedResponse};
use themis_server::config::{Config, SyncMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-jwt-test-secret";
const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210-not-the-server";
const ISSUER: &str = "themis-test-issuer";
const AUDIENCE: &str = "themis-test-audience";

// ---------------------------------------------------------------------------
// Frames over any stream (plaintext TCP or TLS)
// ---------------------------------------------------------------------------

struct Wire<S> {
    stream: S,
    buf: BytesMut,
    codec: FrameCodec,
    next_id: u64,
}

type Plain = Wire<TcpStream>;

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn new(stream: S) -> Self {
        Wire {
            stream,
            buf: BytesMut::new(),
            codec: FrameCodec::default(),
            next_id: 10,
        }
    }

    async fn send<M: Message>(&mut self, op: OpCode, id: u64, msg: &M) {
        let mut out = BytesMut::new();
        encode_frame(&self.codec, op, id, msg, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Several requests in one write (pipelined).
    async fn send_many<M: Message>(&mut self, frames: &[(OpCode, u64, M)]) {
        let mut out = BytesMut::new();
        for (op, id, msg) in frames {
            encode_frame(&self.codec, *op, *id, msg, &mut out).expect("encode");
        }
        self.stream.write_all(&out).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// The next frame; `None` when the server closed the connection. Panics after 10 s.
    async fn recv(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(payload) = self.codec.decode(&mut self.buf).expect("valid frame") {
                let env = wire::Envelope::decode(payload).expect("envelope decodes");
                return Some(Frame {
                    opcode: env.opcode,
                    request_id: env.request_id,
                    body: env.body,
                });
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => panic!("no frame and no close within 10 s"),
                Ok(Ok(0)) => return None,
                Ok(Ok(_)) => {}
                // A TLS peer that closes without close_notify, say: closed all the same.
                Ok(Err(e)) => {
                    eprintln!("read ended with {e}");
                    return None;
                }
            }
        }
    }

    async fn handshake(&mut self, req: &wire::HandshakeRequest) -> wire::HandshakeResponse {
        self.send(OpCode::OpHandshake, 1, req).await;
        let f = self.recv().await.expect("handshake answer");
        assert_eq!(f.op(), OpCode::OpHandshake, "{f:?}");
        f.decode()
    }

    /// Sends one request; the frame answering it (events skipped).
    async fn frame<M: Message>(&mut self, op: OpCode, msg: &M) -> Frame {
        self.next_id += 1;
        let id = self.next_id;
        self.send(op, id, msg).await;
        loop {
            let f = self.recv().await.expect("an answer, not a close");
            if f.op() == OpCode::OpEvent {
                continue;
            }
            assert_eq!(f.request_id, id, "{f:?}");
            return f;
        }
    }

    async fn admin_raw(&mut self, action: Action) -> wire::AdminResponse {
        let req = wire::AdminRequest {
            action: Some(action),
            ..Default::default()
        };
        let f = self.frame(OpCode::OpAdmin, &req).await;
        assert_eq!(f.op(), OpCode::OpAdmin, "{f:?}");
        f.decode()
    }

    /// An admin action that must succeed; its JSON result.
    async fn admin(&mut self, action: Action) -> Value {
        let shown = format!("{action:?}");
        let resp = self.admin_raw(action).await;
        assert!(resp.success, "{shown} failed: {resp:?}");
        serde_json::from_slice(&resp.result).expect("JSON result")
    }

    async fn who_am_i(&mut self) -> Value {
        self.admin(Action::WhoAmI(wire::WhoAmI {})).await
    }

    /// The session of this connection was revoked: see [`Self::expect_session_ended`].
    async fn expect_cut_off(&mut self, who: &str) {
        self.expect_session_ended(who, "session_revoked").await
    }

    /// The session of this connection ended (revoked or expired): the server sends
    /// GOAWAY `reason` (request_id 0) and closes by itself. A request is sent anyway
    /// (a write error is ignored: the server may be gone already); if it raced in
    /// before the GOAWAY, its answer is OP_ERROR ERR_UNAUTHENTICATED. Reads until
    /// EOF: nothing is served.
    async fn expect_session_ended(&mut self, who: &str, reason: &str) {
        self.next_id += 1;
        let id = self.next_id;
        let req = wire::AdminRequest {
            action: Some(Action::WhoAmI(wire::WhoAmI {})),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        encode_frame(&self.codec, OpCode::OpAdmin, id, &req, &mut out).expect("encode");
        if let Err(e) = self.stream.write_all(&out).await {
            eprintln!("{who}: write after the session ended failed ({e}): fine");
        } else if let Err(e) = self.stream.flush().await {
            eprintln!("{who}: flush after the session ended failed ({e}): fine");
        }
        let mut goaway: Option<wire::GoAway> = None;
        let mut refused = false;
        while let Some(f) = self.recv().await {
            match f.op() {
                OpCode::OpGoaway => {
                    assert!(goaway.is_none(), "{who}: a second GOAWAY: {f:?}");
                    assert_eq!(f.request_id, 0, "{who}: GOAWAY with a request id: {f:?}");
                    let g: wire::GoAway = f.decode();
                    assert_eq!(g.reason, reason, "{who}: {g:?}");
                    goaway = Some(g);
                }
                OpCode::OpError => {
                    assert!(!refused, "{who}: a second OP_ERROR: {f:?}");
                    assert_eq!(f.request_id, id, "{who}: {f:?}");
                    let err = f.error();
                    assert_eq!(
                        err.code,
                        ErrorCode::ErrUnauthenticated as i32,
                        "{who}: {err:?}"
                    );
                    refused = true;
                }
                // Not an answer to the request.
                OpCode::OpEvent => assert!(goaway.is_none(), "{who}: an event after GOAWAY: {f:?}"),
                _ => panic!("{who}: served after its session ended: {f:?}"),
            }
        }
        assert!(
            goaway.is_some(),
            "{who}: closed without a GOAWAY {reason:?}"
        );
    }
}

async fn connect(addr: SocketAddr) -> Plain {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    Wire::new(s)
}

/// A new plaintext connection and its handshake answer.
async fn attempt(
    addr: SocketAddr,
    req: &wire::HandshakeRequest,
) -> (Plain, wire::HandshakeResponse) {
    let mut w = connect(addr).await;
    let resp = w.handshake(req).await;
    (w, resp)
}

async fn login(addr: SocketAddr, req: &wire::HandshakeRequest) -> Plain {
    let (w, resp) = attempt(addr, req).await;
    assert!(resp.success, "login refused: {resp:?}");
    w
}

async fn root(addr: SocketAddr) -> Plain {
    login(addr, &by_password("root", ROOT_PASSWORD)).await
}

fn hs(method: AuthMethod) -> wire::HandshakeRequest {
    wire::HandshakeRequest {
        protocol_version: "1.0".into(),
        client_name: "security-test".into(),
        auth_method: method as i32,
        ..Default::default()
    }
}

fn by_password(user: &str, password: &str) -> wire::HandshakeRequest {
    wire::HandshakeRequest {
        username: user.into(),
        password: password.into(),
        ..hs(AuthMethod::UsernamePassword)
    }
}

fn by_api_key(key: &str) -> wire::HandshakeRequest {
    wire::HandshakeRequest {
        api_key: key.into(),
        ..hs(AuthMethod::ApiKey)
    }
}

fn by_jwt(token: &str) -> wire::HandshakeRequest {
    wire::HandshakeRequest {
        jwt_token: token.into(),
        ..hs(AuthMethod::Jwt)
    }
}

fn by_certificate() -> wire::HandshakeRequest {
    hs(AuthMethod::Certificate)
}

fn resume(token: &str) -> wire::HandshakeRequest {
    wire::HandshakeRequest {
        session_token: token.into(),
        ..hs(AuthMethod::UsernamePassword)
    }
}

/// Asserts a refused login with `code` whose message contains every needle
/// (case-insensitive); returns the message.
#[track_caller]
fn assert_refused(resp: &wire::HandshakeResponse, code: ErrorCode, needles: &[&str]) -> String {
    assert!(!resp.success, "expected a refusal, got {resp:?}");
    assert!(resp.session_token.is_empty(), "{resp:?}");
    let err = resp
        .error()
        .unwrap_or_else(|| panic!("no error in {resp:?}"));
    assert_eq!(err.code, code as i32, "expected {code:?}: {err:?}");
    let lower = err.message.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "message lacks {needle:?}: {}",
            err.message
        );
    }
    err.message.clone()
}

async fn create_user(root: &mut Plain, name: &str, password: &str, roles: Vec<wire::RoleGrant>) {
    root.admin(Action::CreateUser(wire::CreateUser {
        name: name.into(),
        password: password.into(),
        superuser: false,
        roles,
    }))
    .await;
}

/// Creates an API key; (key, id, the whole JSON result).
async fn create_key(root: &mut Plain, user: &str, expires_in_ms: u64) -> (String, String, Value) {
    let v = root
        .admin(Action::CreateApiKey(wire::CreateApiKey {
            username: user.into(),
            name: "test key".into(),
            expires_in_ms,
        }))
        .await;
    let key = v["key"].as_str().expect("key in result").to_string();
    let id = v["id"].as_str().expect("id in result").to_string();
    (key, id, v)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

fn base_config(cfg: &mut Config) {
    cfg.storage.sync = SyncMode::Never;
    // Throttling has its own test; elsewhere failed logins must not slow tests down.
    cfg.security.auth_delay = Duration::ZERO;
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

// ---------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------

fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign HS256")
}

fn es256(key_pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(key_pem.as_bytes()).expect("EC key");
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).expect("sign ES256")
}

/// Unpadded base64url.
fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An unsigned token (`alg: none`).
fn unsigned(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

fn claims(sub: &str, exp: u64) -> Value {
    json!({"sub": sub, "exp": exp, "iss": ISSUER, "aud": AUDIENCE, "iat": now_secs()})
}

fn enable_jwt_secret(cfg: &mut Config, dir: &Path) {
    cfg.security.jwt_auth = true;
    cfg.security.jwt_secret_file = Some(write_file(dir, "jwt.secret", &format!("{JWT_SECRET}\n")));
}

// ---------------------------------------------------------------------------
// TLS (patterns from tls.rs)
// ---------------------------------------------------------------------------

/// A client configuration trusting `pki`'s CA, offering only `version`, presenting
/// `client_cert` if given.
fn client_config(
    pki: &TestCa,
    version: &'static rustls::SupportedProtocolVersion,
    client_cert: Option<&Issued>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(&pki.ca_path()) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_cert {
        Some(c) => builder
            .with_client_auth_cert(
                load_certs(&c.cert),
                PrivateKeyDer::from_pem_file(&c.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Wire<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake");
    Wire::new(tls)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_auth_method_works_over_tls_1_2_and_tls_1_3() {
    let pki = TestCa::new("Security Test CA");
    let server_cert = pki.issue("server", &["127.0.0.1", "localhost"], false, false);
    let alice_cert = pki.issue("alice", &[], true, false);
    let keys = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|c| {
        base_config(c);
        c.wire.tls.enabled = true;
        c.wire.tls.cert_path = Some(server_cert.cert.clone());
        c.wire.tls.key_path = Some(server_cert.key.clone());
        c.wire.tls.mtls = true;
        c.wire.tls.ca_cert_path = Some(pki.ca_path());
        c.wire.tls.require_client_cert = false;
        c.security.certificate_auth = true;
        enable_jwt_secret(c, keys.path());
    })
    .await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "alice", "alice-password", vec![]).await;
    let (key, _, _) = create_key(&mut root, "alice", 0).await;
    let token = hs256(JWT_SECRET, &claims("alice", now_secs() + 600));

    let methods = [
        (
            "USERNAME_PASSWORD",
            by_password("alice", "alice-password"),
            false,
        ),
        ("API_KEY", by_api_key(&key), false),
        ("JWT", by_jwt(&token), false),
        ("CERTIFICATE", by_certificate(), true),
    ];
    let versions = [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ];
    for (version, expected_version) in versions {
        for (name, req, with_cert) in &methods {
            let config = client_config(&pki, version, with_cert.then_some(&alice_cert));
            let mut w = tls_connect(server.addr, config).await;
            assert_eq!(
                w.stream.get_ref().1.protocol_version(),
                Some(expected_version),
                "{name}"
            );
            let resp = w.handshake(req).await;
            assert!(resp.success, "{name} over {expected_version:?}: {resp:?}");
            assert_eq!(resp.server_info.unwrap().username, "alice", "{name}");
            let me = w.who_am_i().await;
            assert_eq!(me["username"], "alice", "{name}: {me}");
            assert_eq!(me["method"], *name, "{name}: {me}");
        }
        // CERTIFICATE without a certificate is refused.
        let mut w = tls_connect(server.addr, client_config(&pki, version, None)).await;
        let resp = w.handshake(&by_certificate()).await;
        assert_refused(&resp, ErrorCode::ErrAuthFailed, &["no client certificate"]);
        // A certificate naming someone else than the username sent is refused.
        let mut w = tls_connect(server.addr, client_config(&pki, version, Some(&alice_cert))).await;
        let req = wire::HandshakeRequest {
            username: "root".into(),
            ..by_certificate()
        };
        assert_refused(
            &w.handshake(&req).await,
            ErrorCode::ErrAuthFailed,
            &["alice"],
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn jwt_refusals_say_why_and_a_good_hs256_token_logs_in() {
    let keys = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|c| {
        base_config(c);
        enable_jwt_secret(c, keys.path());
        c.security.jwt_issuer = Some(ISSUER.into());
        c.security.jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "jwtuser", "jwt-user-password", vec![]).await;
    let later = now_secs() + 600;

    let mut wrong_aud = claims("jwtuser", later);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("jwtuser", later);
    wrong_iss["iss"] = json!("evil-issuer");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "forged (other secret)",
            hs256(OTHER_SECRET, &claims("jwtuser", later)),
            &["signature"],
        ),
        (
            "expired",
            hs256(JWT_SECRET, &claims("jwtuser", now_secs() - 3600)),
            &["expired"],
        ),
        (
            "wrong audience",
            hs256(JWT_SECRET, &wrong_aud),
            &["audience"],
        ),
        ("wrong issuer", hs256(JWT_SECRET, &wrong_iss), &["issuer"]),
        (
            "alg none",
            unsigned(&claims("jwtuser", later)),
            &["algorithm", "none"],
        ),
        (
            "unknown user",
            hs256(JWT_SECRET, &claims("ghost", later)),
            &["ghost", "does not exist"],
        ),
    ];
    for (what, token, needles) in &cases {
        let (_, resp) = attempt(server.addr, &by_jwt(token)).await;
        assert!(!resp.success, "{what}: accepted: {resp:?}");
        assert_refused(&resp, ErrorCode::ErrAuthFailed, needles);
    }

    // A good token; its session ends no later than the server would accept the
    // token: exp plus jwt_leeway (the clock skew allowed).
    let exp = now_secs() + 120;
    let token = hs256(JWT_SECRET, &claims("jwtuser", exp));
    let (mut w, resp) = attempt(server.addr, &by_jwt(&token)).await;
    assert!(resp.success, "{resp:?}");
    let info = resp.server_info.unwrap();
    assert_eq!(info.username, "jwtuser");
    assert!(
        info.session_expires_at_ms <= exp * 1000 + leeway_ms(),
        "session outlives its token: {} > {} + leeway",
        info.session_expires_at_ms,
        exp * 1000
    );
    assert!(info.session_expires_at_ms > now_ms(), "{info:?}");
    assert_eq!(w.who_am_i().await["method"], "JWT");
    server.shutdown().await;
}

#[tokio::test]
async fn es256_tokens_verify_with_a_pem_public_key() {
    let keys = tempfile::tempdir().unwrap();
    let signing = KeyPair::generate().unwrap(); // ECDSA P-256
    let public_pem = signing.public_key_pem();
    let public = write_file(keys.path(), "jwt-public.pem", &public_pem);
    let server = TestServer::start_with(|c| {
        base_config(c);
        c.security.jwt_auth = true;
        c.security.jwt_public_key_path = Some(public.clone());
    })
    .await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "ecuser", "ec-user-password", vec![]).await;
    let exp = now_secs() + 300;

    // Another EC key's signature does not verify.
    let other = KeyPair::generate().unwrap();
    let forged = es256(
        &other.serialize_pem(),
        &json!({"sub": "ecuser", "exp": exp}),
    );
    let (_, resp) = attempt(server.addr, &by_jwt(&forged)).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &["signature"]);
    // Algorithm confusion: HS256 "signed" with the public key as the secret.
    let confused = hs256(&public_pem, &json!({"sub": "ecuser", "exp": exp}));
    let (_, resp) = attempt(server.addr, &by_jwt(&confused)).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &["HS256"]);

    // The right key logs in.
    let good = es256(
        &signing.serialize_pem(),
        &json!({"sub": "ecuser", "exp": exp}),
    );
    let (_, resp) = attempt(server.addr, &by_jwt(&good)).await;
    assert!(resp.success, "{resp:?}");
    let info = resp.server_info.unwrap();
    assert_eq!(info.username, "ecuser");
    // Its session ends no later than the token (plus the leeway).
    assert!(
        info.session_expires_at_ms <= exp * 1000 + leeway_ms(),
        "session outlives its token: {} > {} + leeway",
        info.session_expires_at_ms,
        exp * 1000
    );
    server.shutdown().await;
}

#[tokio::test]
async fn api_key_is_shown_once_and_revoking_it_cuts_its_connections() {
    let server = TestServer::start_with(base_config).await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "keyuser", "key-user-password", vec![]).await;
    let (key, id, created) = create_key(&mut root, "keyuser", 0).await;

    // themis_<12 hex>_<40 alphanumerics>; the id is the 12 hex.
    let (key_id, secret) = key
        .strip_prefix("themis_")
        .and_then(|rest| rest.split_once('_'))
        .unwrap_or_else(|| panic!("bad key shape: {key}"));
    assert_eq!(key_id, id);
    assert!(
        key_id.len() == 12 && key_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert!(
        secret.len() == 40 && secret.chars().all(|c| c.is_ascii_alphanumeric()),
        "{key}"
    );
    assert_eq!(created["username"], "keyuser", "{created}");

    // Listing shows the key by id, never its secret.
    let listed = root
        .admin(Action::ListApiKeys(wire::ListApiKeys {
            username: "keyuser".into(),
        }))
        .await;
    let text = listed.to_string();
    assert!(text.contains(&id), "{text}");
    assert!(
        !text.contains(secret),
        "list_api_keys shows the secret: {text}"
    );

    let (mut open, resp) = attempt(server.addr, &by_api_key(&key)).await;
    assert!(resp.success, "{resp:?}");
    assert_eq!(resp.server_info.unwrap().username, "keyuser");
    let me = open.who_am_i().await;
    assert_eq!(me["method"], "API_KEY", "{me}");
    assert_eq!(me["api_key_id"], id.as_str(), "{me}");
    // A password session of the same user is not the key's.
    let mut by_pw = login(server.addr, &by_password("keyuser", "key-user-password")).await;

    let revoked = root
        .admin(Action::RevokeApiKey(wire::RevokeApiKey { id: id.clone() }))
        .await;
    assert_eq!(revoked["revoked"], true, "{revoked}");

    let (_, resp) = attempt(server.addr, &by_api_key(&key)).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &["revoked"]);
    open.expect_cut_off("connection logged in with the revoked key")
        .await;
    assert_eq!(by_pw.who_am_i().await["username"], "keyuser");
    server.shutdown().await;
}

#[tokio::test]
async fn expired_api_key_is_refused_and_key_sessions_end_with_the_key() {
    let server = TestServer::start_with(base_config).await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "temp", "temp-password", vec![]).await;

    let (short, _, _) = create_key(&mut root, "temp", 200).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, resp) = attempt(server.addr, &by_api_key(&short)).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &["expired"]);

    // A session opened with an expiring key ends no later than the key.
    let (longer, _, created) = create_key(&mut root, "temp", 60_000).await;
    let expires = created["expires_at_ms"].as_u64().expect("expires_at_ms");
    let (_, resp) = attempt(server.addr, &by_api_key(&longer)).await;
    assert!(resp.success, "{resp:?}");
    let info = resp.server_info.unwrap();
    assert!(
        info.session_expires_at_ms <= expires,
        "{info:?} vs {expires}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn disabled_methods_are_refused_as_disabled() {
    let server = TestServer::start_with(|c| {
        base_config(c);
        c.security.api_key_auth = false;
        c.security.jwt_auth = false;
        c.security.certificate_auth = false;
    })
    .await;
    let fake_key = format!("themis_0123456789ab_{}", "a".repeat(40));
    let token = hs256(JWT_SECRET, &claims("root", now_secs() + 600));
    for (what, req) in [
        ("API_KEY", by_api_key(&fake_key)),
        ("JWT", by_jwt(&token)),
        ("CERTIFICATE", by_certificate()),
    ] {
        let (_, resp) = attempt(server.addr, &req).await;
        let msg = assert_refused(&resp, ErrorCode::ErrAuthFailed, &["disabled"]);
        assert!(msg.contains(what), "{msg}");
    }
    // Password login still works there.
    let _root = root(server.addr).await;
    server.shutdown().await;

    let server = TestServer::start_with(|c| {
        base_config(c);
        c.security.password_auth = false;
    })
    .await;
    let (_, resp) = attempt(server.addr, &by_password("root", ROOT_PASSWORD)).await;
    assert_refused(
        &resp,
        ErrorCode::ErrAuthFailed,
        &["disabled", "USERNAME_PASSWORD"],
    );
    server.shutdown().await;
}

#[tokio::test]
async fn revoked_sessions_cannot_be_resumed_and_drop_user_ends_sessions() {
    let server = TestServer::start_with(base_config).await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "sess", "sess-password", vec![]).await;

    let (_first, resp) = attempt(server.addr, &by_password("sess", "sess-password")).await;
    assert!(resp.success, "{resp:?}");
    let token = resp.session_token.clone();
    let mut second = login(server.addr, &by_password("sess", "sess-password")).await;
    // Before revocation the token resumes.
    let (mut resumed, resp) = attempt(server.addr, &resume(&token)).await;
    assert!(resp.success, "resume before revocation: {resp:?}");
    assert_eq!(resp.server_info.unwrap().username, "sess");

    let out = root
        .admin(Action::RevokeSessions(wire::RevokeSessions {
            username: "sess".into(),
        }))
        .await;
    assert!(out["revoked"].as_u64().unwrap_or(0) >= 2, "{out}");

    let (_, resp) = attempt(server.addr, &resume(&token)).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &[]);
    second.expect_cut_off("second session of sess").await;
    resumed.expect_cut_off("resumed session of sess").await;
    // Logging in again works.
    let _again = login(server.addr, &by_password("sess", "sess-password")).await;

    // drop_user: its sessions end and its keys stop working.
    create_user(&mut root, "doomed", "doomed-password", vec![]).await;
    let (key, id, _) = create_key(&mut root, "doomed", 0).await;
    let mut with_key = login(server.addr, &by_api_key(&key)).await;
    let mut with_pw = login(server.addr, &by_password("doomed", "doomed-password")).await;
    root.admin(Action::DropUser(wire::DropUser {
        name: "doomed".into(),
    }))
    .await;
    with_key.expect_cut_off("doomed's key session").await;
    with_pw.expect_cut_off("doomed's password session").await;
    let (_, resp) = attempt(server.addr, &by_api_key(&key)).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &[]);
    let keys = root
        .admin(Action::ListApiKeys(wire::ListApiKeys {
            username: "*".into(),
        }))
        .await;
    let entry = keys
        .as_array()
        .and_then(|a| a.iter().find(|k| k["id"] == id.as_str()))
        .cloned();
    let entry = entry.expect("the dropped user's key is still listed (as revoked)");
    assert_eq!(entry["revoked"], true, "{entry}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_expired_session_ends_its_connection_and_cannot_be_resumed() {
    let server = TestServer::start_with(|c| {
        base_config(c);
        c.server.session_ttl = Duration::from_secs(1);
    })
    .await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "brief", "brief-password", vec![]).await;
    let (mut conn, resp) = attempt(server.addr, &by_password("brief", "brief-password")).await;
    assert!(resp.success, "{resp:?}");
    let token = resp.session_token.clone();
    let expires = resp.server_info.unwrap().session_expires_at_ms;
    assert!(expires <= now_ms() + 1000, "ttl 1 s, expires at {expires}");
    // Served while the session lasts.
    assert_eq!(conn.who_am_i().await["username"], "brief");
    while now_ms() <= expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.expect_session_ended("expired session", "session_expired")
        .await;
    let (_, resp) = attempt(server.addr, &resume(&token)).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &["expired"]);
    // Credentials still work.
    let _again = login(server.addr, &by_password("brief", "brief-password")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn failed_logins_are_throttled_with_doubling_delays() {
    let server = TestServer::start_with(|c| {
        c.storage.sync = SyncMode::Never;
        c.security.auth_free_attempts_per_user = 3;
        c.security.auth_delay = Duration::from_millis(400);
        c.security.auth_max_delay = Duration::from_secs(2);
    })
    .await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "victim", "victim-password", vec![]).await;
    create_user(&mut root, "bystander", "bystander-password", vec![]).await;

    let wrong = by_password("victim", "wrong-password");
    for _ in 0..3 {
        let (_, resp) = attempt(server.addr, &wrong).await;
        assert_refused(&resp, ErrorCode::ErrAuthFailed, &[]);
    }
    // Attempts 4, 5, 6 wait 400, 800, 1600 ms at least before being answered.
    for (n, at_least) in [(4, 400u64), (5, 800), (6, 1600)] {
        let mut w = connect(server.addr).await;
        let started = Instant::now();
        let resp = w.handshake(&wrong).await;
        let took = started.elapsed();
        assert_refused(&resp, ErrorCode::ErrAuthFailed, &[]);
        assert!(
            took >= Duration::from_millis(at_least),
            "attempt {n} answered after {took:?}, expected at least {at_least} ms"
        );
    }
    // Another user from the same address (6 failures < 20 free per address) logs in.
    let (_, resp) = attempt(server.addr, &by_password("bystander", "bystander-password")).await;
    assert!(resp.success, "{resp:?}");
    // The right password still works, after its delay (400 * 2^3, capped at 2 s).
    let mut w = connect(server.addr).await;
    let started = Instant::now();
    let resp = w.handshake(&by_password("victim", "victim-password")).await;
    let took = started.elapsed();
    assert!(resp.success, "{resp:?}");
    assert!(took >= Duration::from_secs(2), "answered after {took:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let server = TestServer::start_with(|c| {
        base_config(c);
        c.security.max_connections_per_ip = 2;
    })
    .await;
    let first = root(server.addr).await;
    let mut second = root(server.addr).await;

    let mut third = connect(server.addr).await;
    let f = third.recv().await.expect("a refusal");
    assert_eq!(f.op(), OpCode::OpError, "{f:?}");
    let err = f.error();
    assert_eq!(err.code, ErrorCode::ErrResourceExhausted as i32, "{err:?}");
    assert!(err.message.contains("max_connections_per_ip"), "{err:?}");
    assert!(
        third.recv().await.is_none(),
        "the refused connection stays open"
    );
    // The two stay served.
    assert_eq!(second.who_am_i().await["username"], "root");

    // Once one closes, a new one is accepted (the server notices the close
    // asynchronously: retry a few times).
    drop(first);
    let mut accepted = None;
    for _ in 0..50 {
        let mut w = connect(server.addr).await;
        w.send(OpCode::OpHandshake, 1, &by_password("root", ROOT_PASSWORD))
            .await;
        match w.recv().await {
            Some(f) if f.op() == OpCode::OpHandshake => {
                let resp: wire::HandshakeResponse = f.decode();
                assert!(resp.success, "{resp:?}");
                accepted = Some(w);
                break;
            }
            Some(f) => {
                assert_eq!(f.error().code, ErrorCode::ErrResourceExhausted as i32);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut accepted = accepted.expect("a connection accepted after one closed");
    assert_eq!(accepted.who_am_i().await["username"], "root");
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_refuses_a_users_burst_but_not_pings_or_other_users() {
    let server = TestServer::start_with(|c| {
        base_config(c);
        c.security.rate_limit = 5;
        c.security.rate_limit_burst = 5;
    })
    .await;
    // Four requests of root: within its own burst.
    let mut root = root(server.addr).await;
    root.admin(Action::CreateDatabase(wire::CreateDatabase {
        name: "rl".into(),
    }))
    .await;
    let grant = vec![wire::RoleGrant {
        database: "rl".into(),
        role: "readonly".into(),
    }];
    create_user(&mut root, "alice", "alice-password", grant.clone()).await;
    create_user(&mut root, "bob", "bob-password", grant).await;
    let mut alice = login(server.addr, &by_password("alice", "alice-password")).await;
    let mut bob = login(server.addr, &by_password("bob", "bob-password")).await;

    // PING is answered before the rate limiter (connection.rs), so the burst is
    // made of READs.
    let read = wire::ReadRequest {
        collection: "nothing".into(),
        document_ids: vec!["k".into()],
        database: "rl".into(),
        ..Default::default()
    };
    let frames: Vec<_> = (100..120u64)
        .map(|id| (OpCode::OpRead, id, read.clone()))
        .collect();
    alice.send_many(&frames).await;
    let (mut served, mut limited) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let f = alice.recv().await.expect("an answer per READ");
        assert!((100..120).contains(&f.request_id), "{f:?}");
        assert!(seen.insert(f.request_id), "two answers for {f:?}");
        match f.op() {
            OpCode::OpError => {
                let err = f.error();
                assert_eq!(err.code, ErrorCode::ErrRateLimited as i32, "{err:?}");
                assert!(err.retryable, "{err:?}");
                assert!(err.retry_after_ms > 0, "{err:?}");
                limited += 1;
            }
            OpCode::OpRead => {
                // Served past the limiter: a typed answer (the collection is
                // missing, which is not what is tested here).
                let resp: wire::ReadResponse = f.decode();
                let code = resp.error().map(|e| e.code);
                assert_ne!(code, Some(ErrorCode::ErrRateLimited as i32), "{resp:?}");
                served += 1;
            }
            other => panic!("unexpected {other:?}: {f:?}"),
        }
    }
    assert!(
        served >= 5,
        "the burst of 5 was not served: {served} served, {limited} limited"
    );
    assert!(
        limited >= 1,
        "20 READs at once were all served: rate limit not applied"
    );
    assert_eq!(served + limited, 20);

    // PINGs are not limited.
    let pings: Vec<_> = (200..220u64)
        .map(|id| (OpCode::OpPing, id, wire::Ping { timestamp_ms: id }))
        .collect();
    alice.send_many(&pings).await;
    for _ in 0..20 {
        let f = alice.recv().await.expect("pong");
        assert_eq!(f.op(), OpCode::OpPong, "a PING was limited: {f:?}");
    }

    // Another user has its own budget.
    let f = bob.frame(OpCode::OpRead, &read).await;
    assert_eq!(
        f.op(),
        OpCode::OpRead,
        "bob limited by alice's burst: {f:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn audit_log_records_security_events_without_secrets() {
    let logs = tempfile::tempdir().unwrap();
    let audit_path = logs.path().join("audit.jsonl");
    let server = TestServer::start_with(|c| {
        base_config(c);
        c.security.audit_log = Some(audit_path.clone());
    })
    .await;
    let user_password = "audited-secret-password-1";
    let wrong_password = "audited-wrong-password-2";
    let (mut root, root_hs) = attempt(server.addr, &by_password("root", ROOT_PASSWORD)).await;
    assert!(root_hs.success);
    root.admin(Action::CreateDatabase(wire::CreateDatabase {
        name: "secret_db".into(),
    }))
    .await;
    create_user(&mut root, "audited", user_password, vec![]).await;

    let (mut user, user_hs) = attempt(server.addr, &by_password("audited", user_password)).await;
    assert!(user_hs.success, "{user_hs:?}");
    let (_, failed) = attempt(server.addr, &by_password("audited", wrong_password)).await;
    assert_refused(&failed, ErrorCode::ErrAuthFailed, &[]);
    let denied = user
        .frame(
            OpCode::OpRead,
            &wire::ReadRequest {
                collection: "c".into(),
                document_ids: vec!["k".into()],
                database: "secret_db".into(),
                ..Default::default()
            },
        )
        .await;
    let denied: wire::ReadResponse = denied.decode();
    assert_eq!(
        denied.error().map(|e| e.code),
        Some(ErrorCode::ErrPermissionDenied as i32),
        "{denied:?}"
    );
    let (key, id, _) = create_key(&mut root, "audited", 0).await;
    let (_, key_hs) = attempt(server.addr, &by_api_key(&key)).await;
    assert!(key_hs.success, "{key_hs:?}");
    root.admin(Action::RevokeApiKey(wire::RevokeApiKey { id: id.clone() }))
        .await;

    let text = std::fs::read_to_string(&audit_path).expect("audit log written");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for r in &records {
        for field in ["time", "kind", "peer", "username", "method", "detail"] {
            assert!(r.get(field).is_some(), "record lacks {field}: {r}");
        }
    }
    let has = |kind: &str, username: &str| {
        records
            .iter()
            .any(|r| r["kind"] == kind && r["username"] == username)
    };
    for (kind, username) in [
        ("login", "root"),
        ("login", "audited"),
        ("login_failed", "audited"),
        ("permission_denied", "audited"),
        ("user_created", "root"),
        ("api_key_created", "root"),
        ("api_key_revoked", "root"),
    ] {
        assert!(
            has(kind, username),
            "no {kind} record for {username}:\n{text}"
        );
    }
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "login" && r["method"] == "API_KEY"),
        "no API key login record:\n{text}"
    );
    assert!(
        records.iter().any(|r| r["kind"] == "user_created"
            && r["detail"].as_str().unwrap_or("").contains("audited")),
        "user_created does not name the new user:\n{text}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "api_key_revoked"
                && r["detail"].as_str().unwrap_or("").contains(&id)),
        "api_key_revoked does not name the key id:\n{text}"
    );

    let secret = key.rsplit('_').next().unwrap().to_string();
    for (what, s) in [
        ("root password", ROOT_PASSWORD.to_string()),
        ("user password", user_password.to_string()),
        ("wrong password", wrong_password.to_string()),
        ("API key", key.clone()),
        ("API key secret", secret),
        ("root session token", root_hs.session_token.clone()),
        ("user session token", user_hs.session_token.clone()),
        ("key session token", key_hs.session_token.clone()),
    ] {
        assert!(!s.is_empty(), "{what} is empty");
        assert!(
            !text.contains(&s),
            "the audit log contains the {what}:\n{text}"
        );
    }
    server.shutdown().await;
}

/// Sets `name`'s password; the admin answer (success or not).
async fn set_password(
    w: &mut Plain,
    name: &str,
    password: &str,
    old_password: &str,
) -> wire::AdminResponse {
    w.admin_raw(Action::SetPassword(wire::SetPassword {
        name: name.into(),
        password: password.into(),
        old_password: old_password.into(),
    }))
    .await
}

/// Asserts an admin action refused with ERR_PERMISSION_DENIED whose message contains
/// every needle; returns the message.
#[track_caller]
fn assert_admin_denied(resp: &wire::AdminResponse, needles: &[&str]) -> String {
    assert!(!resp.success, "expected a denial, got {resp:?}");
    let err = resp
        .error()
        .unwrap_or_else(|| panic!("no error in {resp:?}"));
    assert_eq!(
        err.code,
        ErrorCode::ErrPermissionDenied as i32,
        "expected ERR_PERMISSION_DENIED: {err:?}"
    );
    for needle in needles {
        assert!(
            err.message.contains(needle),
            "message lacks {needle:?}: {}",
            err.message
        );
    }
    err.message.clone()
}

#[tokio::test]
async fn changing_your_own_password_takes_the_old_one_and_ends_your_other_sessions() {
    let server = TestServer::start_with(base_config).await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "pw", "pw-password-1", vec![]).await;
    let mut me = login(server.addr, &by_password("pw", "pw-password-1")).await;
    let mut other = login(server.addr, &by_password("pw", "pw-password-1")).await;

    // Missing or wrong old password: refused, nothing changes.
    for (what, old) in [("missing", ""), ("wrong", "not-the-password")] {
        let resp = set_password(&mut me, "pw", "pw-password-2", old).await;
        assert_admin_denied(&resp, &[]);
        eprintln!("{what} old_password refused: {resp:?}");
        // The empty name means one's own too.
        let resp = set_password(&mut me, "", "pw-password-2", old).await;
        assert_admin_denied(&resp, &[]);
    }
    assert_eq!(other.who_am_i().await["username"], "pw");
    let _still = login(server.addr, &by_password("pw", "pw-password-1")).await;
    // A superuser changing its own password needs the old one as well.
    let resp = set_password(&mut root, "root", "another-root-password", "").await;
    assert_admin_denied(&resp, &[]);

    // The right one: changed; the caller stays, the user's other sessions end.
    let resp = set_password(&mut me, "pw", "pw-password-2", "pw-password-1").await;
    assert!(resp.success, "{resp:?}");
    other.expect_cut_off("pw's other session").await;
    assert_eq!(me.who_am_i().await["username"], "pw");
    let (_, resp) = attempt(server.addr, &by_password("pw", "pw-password-1")).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &[]);
    let _new = login(server.addr, &by_password("pw", "pw-password-2")).await;

    // A superuser sets another user's password without the old one.
    let resp = set_password(&mut root, "pw", "pw-password-3", "").await;
    assert!(resp.success, "{resp:?}");
    let _set = login(server.addr, &by_password("pw", "pw-password-3")).await;
    let (_, resp) = attempt(server.addr, &by_password("pw", "pw-password-2")).await;
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &[]);
    // Root is still served.
    assert_eq!(root.who_am_i().await["username"], "root");
    server.shutdown().await;
}

#[tokio::test]
async fn key_and_token_sessions_cannot_mint_keys_for_their_own_user() {
    let keys = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(|c| {
        base_config(c);
        enable_jwt_secret(c, keys.path());
    })
    .await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "minter", "minter-password", vec![]).await;
    let (key, _, _) = create_key(&mut root, "minter", 0).await;
    let token = hs256(JWT_SECRET, &claims("minter", now_secs() + 600));
    let own_key = |username: &str| {
        Action::CreateApiKey(wire::CreateApiKey {
            username: username.into(),
            name: "minted".into(),
            expires_in_ms: 0,
        })
    };

    for (method, req) in [("API_KEY", by_api_key(&key)), ("JWT", by_jwt(&token))] {
        let mut w = login(server.addr, &req).await;
        assert_eq!(w.who_am_i().await["method"], method);
        for username in ["minter", ""] {
            let resp = w.admin_raw(own_key(username)).await;
            assert_admin_denied(&resp, &[method]);
            assert!(resp.result.is_empty(), "{resp:?}");
        }
    }
    // A password session of the same user may.
    let mut by_pw = login(server.addr, &by_password("minter", "minter-password")).await;
    let (minted, _, _) = create_key(&mut by_pw, "minter", 0).await;
    let _with_minted = login(server.addr, &by_api_key(&minted)).await;

    // A superuser's key session cannot mint one for itself either, but still may for
    // other users.
    let (root_key, _, _) = create_key(&mut root, "root", 0).await;
    let mut root_by_key = login(server.addr, &by_api_key(&root_key)).await;
    let resp = root_by_key.admin_raw(own_key("root")).await;
    assert_admin_denied(&resp, &["API_KEY"]);
    let (for_minter, _, created) = create_key(&mut root_by_key, "minter", 0).await;
    assert_eq!(created["username"], "minter", "{created}");
    let (_, resp) = attempt(server.addr, &by_api_key(&for_minter)).await;
    assert!(resp.success, "{resp:?}");
    assert_eq!(resp.server_info.unwrap().username, "minter");
    server.shutdown().await;
}

#[tokio::test]
async fn a_key_of_an_earlier_user_of_the_same_name_is_refused() {
    let server = TestServer::start_with(base_config).await;
    let mut root = root(server.addr).await;
    create_user(&mut root, "phoenix", "phoenix-password", vec![]).await;
    let (key, _, _) = create_key(&mut root, "phoenix", 0).await;
    let _ok = login(server.addr, &by_api_key(&key)).await;
    root.admin(Action::DropUser(wire::DropUser {
        name: "phoenix".into(),
    }))
    .await;
    create_user(&mut root, "phoenix", "phoenix-password-2", vec![]).await;
    let (_, resp) = attempt(server.addr, &by_api_key(&key)).await;
    // Revoked by drop_user, and older than the user besides: either reason will do.
    assert_refused(&resp, ErrorCode::ErrAuthFailed, &[]);
    // The new user logs in with its own credentials.
    let _new = login(server.addr, &by_password("phoenix", "phoenix-password-2")).await;
    server.shutdown().await;
}

/// What a CREATE into `database` on a connection whose rights were just taken away
/// came to: refused with ERR_PERMISSION_DENIED, or the connection cut with GOAWAY
/// "session_revoked" (the request, if answered first, with ERR_UNAUTHENTICATED).
/// Panics if the CREATE was served.
async fn expect_create_refused(w: &mut Plain, database: &str, who: &str) {
    w.next_id += 1;
    let id = w.next_id;
    let req = wire::CreateRequest {
        collection: "c".into(),
        document: serde_json::to_vec(&json!({"by": who})).unwrap().into(),
        database: database.into(),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    encode_frame(&w.codec, OpCode::OpCreate, id, &req, &mut out).expect("encode");
    if let Err(e) = w.stream.write_all(&out).await {
        eprintln!("{who}: write failed ({e}): the connection is gone");
    }
    let mut goaway = false;
    while let Some(f) = w.recv().await {
        match f.op() {
            OpCode::OpCreate => {
                assert!(!goaway, "{who}: answered after GOAWAY: {f:?}");
                assert_eq!(f.request_id, id, "{who}: {f:?}");
                let resp: wire::CreateResponse = f.decode();
                assert!(!resp.success, "{who}: CREATE served: {resp:?}");
                let err = resp
                    .error()
                    .unwrap_or_else(|| panic!("{who}: no error in {resp:?}"));
                assert_eq!(
                    err.code,
                    ErrorCode::ErrPermissionDenied as i32,
                    "{who}: {err:?}"
                );
                return;
            }
            OpCode::OpError => {
                assert_eq!(f.request_id, id, "{who}: {f:?}");
                let err = f.error();
                assert_eq!(
                    err.code,
                    ErrorCode::ErrUnauthenticated as i32,
                    "{who}: {err:?}"
                );
            }
            OpCode::OpGoaway => {
                assert!(!goaway, "{who}: a second GOAWAY: {f:?}");
                let g: wire::GoAway = f.decode();
                assert_eq!(g.reason, "session_revoked", "{who}: {g:?}");
                goaway = true;
            }
            _ => panic!("{who}: unexpected {f:?}"),
        }
    }
    assert!(goaway, "{who}: closed without GOAWAY and without an answer");
}

#[tokio::test]
async fn a_revocation_or_drop_during_a_login_is_honoured() {
    let server = TestServer::start_with(|c| {
        base_config(c);
        // Slow bcrypt, so the revocation lands while the login checks the password.
        c.server.bcrypt_cost = 12;
    })
    .await;
    let addr = server.addr;
    let mut root = root(addr).await;
    root.admin(Action::CreateDatabase(wire::CreateDatabase {
        name: "race".into(),
    }))
    .await;
    let rw = || {
        vec![wire::RoleGrant {
            database: "race".into(),
            role: "readwrite".into(),
        }]
    };
    create_user(&mut root, "racer", "racer-password", rw()).await;
    create_user(&mut root, "doomed", "doomed-password", rw()).await;
    // The collection CREATEs go to (admin requests default to root's database).
    let made = root
        .frame(
            OpCode::OpAdmin,
            &wire::AdminRequest {
                database: "race".into(),
                action: Some(Action::CreateCollection(wire::CreateCollection {
                    name: "c".into(),
                })),
                ..Default::default()
            },
        )
        .await;
    let made: wire::AdminResponse = made.decode();
    assert!(made.success, "{made:?}");

    // A role revoked while racer's login runs.
    let login_task =
        tokio::spawn(async move { attempt(addr, &by_password("racer", "racer-password")).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    root.admin(Action::RevokeRole(wire::RevokeRole {
        username: "racer".into(),
        database: "race".into(),
    }))
    .await;
    let (mut conn, resp) = login_task.await.expect("login task");
    if resp.success {
        expect_create_refused(&mut conn, "race", "racer after the revocation").await;
    } else {
        eprintln!("racer's login was refused: {resp:?}");
    }

    // A user dropped while its login runs.
    let login_task =
        tokio::spawn(async move { attempt(addr, &by_password("doomed", "doomed-password")).await });
    tokio::time::sleep(Duration::from_millis(30)).await;
    root.admin(Action::DropUser(wire::DropUser {
        name: "doomed".into(),
    }))
    .await;
    let (mut conn, resp) = login_task.await.expect("login task");
    if resp.success {
        expect_create_refused(&mut conn, "race", "doomed after the drop").await;
    } else {
        let why = assert_refused(&resp, ErrorCode::ErrAuthFailed, &[]);
        eprintln!("doomed's login was refused: {why}");
    }
    server.shutdown().await;
}

/// The default `[security] jwt_leeway` in milliseconds: a token is accepted until
/// `exp` plus this, and its session lasts no longer.
fn leeway_ms() -> u64 {
    themis_server::Config::default()
        .security
        .jwt_leeway
        .as_millis() as u64
}
