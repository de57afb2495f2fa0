//! TLS and mTLS on the shared wire-protocol port, with real handshakes: certificates
//! are made in each test with rcgen, the client side is tokio-rustls (or `openssl
//! s_client` for a TLS 1.1 client), and after the handshake the test speaks the wire
//! protocol (HANDSHAKE + PING) over the encrypted stream.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::{load_certs, Issued, RawConn, ServerProcess, TestCa, TestServer, ROOT_PASSWORD};
use prost::Message;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use themis_proto::wire::{self, ErrorCode, OpCode};
use themis_proto::{encode_frame, FrameCodec};
use themis_server::config::{Config, TlsVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn enable_tls(config: &mut Config, server: &Issued) {
    config.wire.tls.enabled = true;
    config.wire.tls.cert_path = Some(server.cert.clone());
    config.wire.tls.key_path = Some(server.key.clone());
}

fn enable_mtls(config: &mut Config, pki: &TestCa, require: bool) {
    config.wire.tls.mtls = true;
    config.wire.tls.ca_cert_path = Some(pki.ca_path());
    config.wire.tls.require_client_cert = require;
}

/// A client configuration trusting `pki`'s CA, offering only `versions`, presenting
/// `client_cert` if given.
fn client_config(
    pki: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_cert: Option<&Issued>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(&pki.ca_path()) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
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

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// TLS handshake to `addr`; `Err` with the reason when the server refuses.
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake hung"))?
}

/// The wire protocol over any stream: handshake as root, then PING → PONG.
/// `Err` when the stream fails before the PONG (as after a refused client
/// certificate, which TLS 1.3 reports only on the first read).
async fn handshake_and_ping<S>(stream: &mut S) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let codec = FrameCodec::default();
    let mut out = BytesMut::new();
    let hs = wire::HandshakeRequest {
        protocol_version: "1.0".into(),
        client_name: "tls-test".into(),
        username: "root".into(),
        password: ROOT_PASSWORD.into(),
        ..Default::default()
    };
    encode_frame(&codec, OpCode::OpHandshake, 1, &hs, &mut out).unwrap();
    encode_frame(
        &codec,
        OpCode::OpPing,
        2,
        &wire::Ping { timestamp_ms: 42 },
        &mut out,
    )
    .unwrap();
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        if let Some(payload) = codec.decode(&mut buf).unwrap() {
            frames.push(wire::Envelope::decode(payload).unwrap());
            continue;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    assert_eq!(frames[0].opcode, OpCode::OpHandshake as i32, "{frames:?}");
    let resp = wire::HandshakeResponse::decode(frames[0].body.clone()).unwrap();
    assert!(resp.success, "{resp:?}");
    assert_eq!(frames[1].opcode, OpCode::OpPong as i32, "{frames:?}");
    assert_eq!(frames[1].request_id, 2);
    assert_eq!(
        wire::Pong::decode(frames[1].body.clone())
            .unwrap()
            .timestamp_ms,
        42
    );
    Ok(())
}

/// Connects with TLS and runs HANDSHAKE + PING; the negotiated version on success.
async fn tls_session(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::ProtocolVersion> {
    let mut tls = tls_connect(addr, config).await?;
    handshake_and_ping(&mut tls).await?;
    let version = tls.get_ref().1.protocol_version().unwrap();
    let _ = tls.shutdown().await;
    Ok(version)
}

#[tokio::test]
async fn tls_and_plaintext_share_the_port() {
    let pki = TestCa::new("Test CA");
    let server_cert = pki.server();
    let server = TestServer::start_with(|c| enable_tls(c, &server_cert)).await;

    let v = tls_session(server.addr, client_config(&pki, BOTH, None))
        .await
        .expect("TLS session works");
    assert_eq!(v, rustls::ProtocolVersion::TLSv1_3, "TLS 1.3 is preferred");

    // Plaintext still works when TLS is not required.
    let mut plain = RawConn::login(server.addr).await;
    plain.ping_ok(9).await;
    server.shutdown().await;
}

#[tokio::test]
async fn tls_1_2_and_1_3_both_work_and_min_version_1_3_refuses_1_2() {
    let pki = TestCa::new("Test CA");
    let server_cert = pki.server();
    let server = TestServer::start_with(|c| enable_tls(c, &server_cert)).await;
    let v13 = tls_session(
        server.addr,
        client_config(&pki, &[&rustls::version::TLS13], None),
    )
    .await
    .expect("TLS 1.3");
    assert_eq!(v13, rustls::ProtocolVersion::TLSv1_3);
    let v12 = tls_session(
        server.addr,
        client_config(&pki, &[&rustls::version::TLS12], None),
    )
    .await
    .expect("TLS 1.2");
    assert_eq!(v12, rustls::ProtocolVersion::TLSv1_2);
    server.shutdown().await;

    let strict = TestServer::start_with(|c| {
        enable_tls(c, &server_cert);
        c.wire.tls.min_version = TlsVersion::V1_3;
    })
    .await;
    let refused = tls_session(
        strict.addr,
        client_config(&pki, &[&rustls::version::TLS12], None),
    )
    .await;
    assert!(refused.is_err(), "a TLS 1.2-only client must be refused");
    // The refusal touched only that connection.
    tls_session(
        strict.addr,
        client_config(&pki, &[&rustls::version::TLS13], None),
    )
    .await
    .expect("TLS 1.3 still served");
    strict.shutdown().await;
}

#[tokio::test]
async fn tls_1_1_client_is_refused() {
    let pki = TestCa::new("Test CA");
    let server_cert = pki.server();
    let server = TestServer::start_with(|c| enable_tls(c, &server_cert)).await;
    let addr = server.addr.to_string();
    // SECLEVEL=0 lets OpenSSL 3 actually send a TLS 1.1 ClientHello, so the refusal
    // seen is the server's.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args([
                "s_client",
                "-tls1_1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-connect",
                &addr,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("openssl runs")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "TLS 1.1 must fail: {text}");
    // The ClientHello went out and the server answered with an alert (not a client
    // that gave up before sending anything).
    assert!(
        text.contains("alert"),
        "the server refuses with an alert: {text}"
    );
    assert!(
        !text.contains("BEGIN CERTIFICATE") && !text.contains("Server certificate"),
        "no certificate may be served to TLS 1.1: {text}"
    );
    // And the server keeps serving modern clients.
    tls_session(server.addr, client_config(&pki, BOTH, None))
        .await
        .expect("TLS 1.3 after the refused client");
    server.shutdown().await;
}

#[tokio::test]
async fn require_tls_refuses_plaintext_with_a_clear_error() {
    let pki = TestCa::new("Test CA");
    let server_cert = pki.server();
    let server = TestServer::start_with(|c| {
        enable_tls(c, &server_cert);
        c.wire.tls.required = true;
    })
    .await;
    let mut plain = RawConn::connect(server.addr).await;
    let hs = wire::HandshakeRequest {
        protocol_version: "1.0".into(),
        username: "root".into(),
        password: ROOT_PASSWORD.into(),
        ..Default::default()
    };
    plain.send(OpCode::OpHandshake, 1, &hs).await;
    let err = plain.recv().await.expect("an error frame").error();
    assert_eq!(common::code_of(&err), ErrorCode::ErrProtocol, "{err:?}");
    assert!(err.message.contains("requires TLS"), "{}", err.message);
    assert!(
        err.message.contains("enable TLS in the client"),
        "{}",
        err.message
    );
    plain.expect_eof().await;

    tls_session(server.addr, client_config(&pki, BOTH, None))
        .await
        .expect("TLS is served");
    server.shutdown().await;
}

#[tokio::test]
async fn mtls_accepts_only_valid_client_certificates_from_the_ca() {
    let pki = TestCa::new("Test CA");
    let other = TestCa::new("Other CA");
    let server_cert = pki.server();
    let good = pki.issue("alice", &["alice"], true, false);
    let expired = pki.issue("old", &["old"], true, true);
    let foreign = other.issue("mallory", &["mallory"], true, false);
    let server = TestServer::start_with(|c| {
        enable_tls(c, &server_cert);
        enable_mtls(c, &pki, true);
    })
    .await;

    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let ok = tls_session(server.addr, client_config(&pki, versions, Some(&good))).await;
        assert!(ok.is_ok(), "good client cert over {versions:?}: {ok:?}");
        for (what, cert) in [
            ("no client cert", None),
            ("another CA's cert", Some(&foreign)),
            ("an expired cert", Some(&expired)),
        ] {
            let r = tls_session(server.addr, client_config(&pki, versions, cert)).await;
            assert!(r.is_err(), "{what} over {versions:?} must be refused");
        }
    }
    // Plaintext is still allowed on the shared port (require_tls is off).
    RawConn::login(server.addr).await.ping_ok(3).await;
    server.shutdown().await;
}

#[tokio::test]
async fn optional_client_certificates_must_still_verify() {
    let pki = TestCa::new("Test CA");
    let other = TestCa::new("Other CA");
    let server_cert = pki.server();
    let good = pki.issue("alice", &["alice"], true, false);
    let foreign = other.issue("mallory", &["mallory"], true, false);
    let server = TestServer::start_with(|c| {
        enable_tls(c, &server_cert);
        enable_mtls(c, &pki, false);
    })
    .await;
    tls_session(server.addr, client_config(&pki, BOTH, None))
        .await
        .expect("no certificate is fine when not required");
    tls_session(server.addr, client_config(&pki, BOTH, Some(&good)))
        .await
        .expect("a good certificate is accepted");
    assert!(
        tls_session(server.addr, client_config(&pki, BOTH, Some(&foreign)))
            .await
            .is_err(),
        "a certificate that is presented must verify"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_tls_handshake_does_not_disturb_other_connections() {
    let pki = TestCa::new("Test CA");
    let server_cert = pki.server();
    let server = TestServer::start_with(|c| {
        enable_tls(c, &server_cert);
        c.wire.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let mut tls = tls_connect(server.addr, client_config(&pki, BOTH, None))
        .await
        .unwrap();
    handshake_and_ping(&mut tls).await.expect("TLS session");
    // A bogus handshake record, and one that never completes (cut off by
    // handshake_timeout): each ends only its own connection.
    let mut junk = RawConn::connect(server.addr).await;
    junk.send_raw(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0, 0, 0])
        .await;
    let mut stalled = RawConn::connect(server.addr).await;
    stalled.send_raw(&[0x16, 0x03, 0x01]).await;
    for conn in [&mut junk, &mut stalled] {
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut b = [0u8; 256];
            while let Ok(n) = conn.stream.read(&mut b).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server closes a failed TLS handshake");
    }
    // The established TLS session still answers, and new ones are accepted.
    let codec = FrameCodec::default();
    let mut out = BytesMut::new();
    let ping = wire::Ping { timestamp_ms: 7 };
    encode_frame(&codec, OpCode::OpPing, 5, &ping, &mut out).unwrap();
    tls.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let pong = loop {
        if let Some(payload) = codec.decode(&mut buf).unwrap() {
            break wire::Envelope::decode(payload).unwrap();
        }
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read_buf(&mut buf))
            .await
            .expect("pong in time")
            .unwrap();
        assert!(n > 0, "TLS session closed");
    };
    assert_eq!(pong.opcode, OpCode::OpPong as i32);
    assert_eq!(pong.request_id, 5);
    tls_session(server.addr, client_config(&pki, BOTH, None))
        .await
        .expect("new TLS sessions are accepted");
    server.shutdown().await;
}

// ---- startup failures, through the real binary ----

/// Runs `themisdb serve` with `conf` and expects it to exit non-zero before it
/// listens; returns its stderr.
fn serve_must_fail(conf: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("themis.conf");
    std::fs::write(&path, conf).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_themisdb"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .env("THEMIS_ROOT_PASSWORD", "pw")
        .env("THEMIS_SERVER_BCRYPT_COST", "4")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("server should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!status.success());
    assert!(
        !stdout.contains("listening"),
        "it must not listen: {stdout}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tls_conf(cert: &Path, key: &Path) -> String {
    format!(
        "[wire_protocol]\nenable_tls = true\ntls_cert_path = {}\ntls_key_path = {}\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn startup_fails_for_a_missing_certificate_file() {
    let pki = TestCa::new("Test CA");
    let server = pki.server();
    let missing = pki.dir.path().join("nope-cert.pem");
    let stderr = serve_must_fail(&tls_conf(&missing, &server.key));
    assert!(stderr.contains("tls_cert_path"), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains("file not found"), "{stderr}");
}

#[test]
fn startup_fails_for_a_key_that_does_not_match() {
    let pki = TestCa::new("Test CA");
    let server = pki.server();
    let other = pki.issue("other", &["localhost"], false, false);
    let stderr = serve_must_fail(&tls_conf(&server.cert, &other.key));
    assert!(stderr.contains("tls_key_path"), "{stderr}");
    assert!(
        stderr.contains(&other.key.display().to_string()),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not match the certificate"),
        "{stderr}"
    );
}

#[test]
fn startup_fails_for_an_expired_certificate() {
    let pki = TestCa::new("Test CA");
    let expired = pki.issue("expired", &["127.0.0.1"], false, true);
    let stderr = serve_must_fail(&tls_conf(&expired.cert, &expired.key));
    assert!(stderr.contains("tls_cert_path"), "{stderr}");
    assert!(
        stderr.contains(&expired.cert.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("expired on 2021-01-01"), "{stderr}");
}

#[test]
fn startup_fails_for_files_swapped_or_not_pem() {
    let pki = TestCa::new("Test CA");
    let server = pki.server();
    // The key file given as the certificate.
    let stderr = serve_must_fail(&tls_conf(&server.key, &server.key));
    assert!(stderr.contains("no certificate in it"), "{stderr}");
    // The certificate given as the key.
    let stderr = serve_must_fail(&tls_conf(&server.cert, &server.cert));
    assert!(stderr.contains("no private key in it"), "{stderr}");
    // mTLS with a CA file that is missing.
    let missing_ca = pki.dir.path().join("missing-ca.pem");
    let conf = format!(
        "{}enable_mtls = true\ntls_ca_cert_path = {}\n",
        tls_conf(&server.cert, &server.key),
        missing_ca.display()
    );
    let stderr = serve_must_fail(&conf);
    assert!(stderr.contains("tls_ca_cert_path"), "{stderr}");
    assert!(stderr.contains("file not found"), "{stderr}");
}

// ---- certificates made with openssl ----

/// Runs a shell script of openssl commands in `dir`.
fn openssl_script(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA made with openssl, for client configs.
fn pki_from_dir(dir: tempfile::TempDir) -> TestCa {
    // Only `ca_path()` (dir/ca-cert.pem) of this TestCa is used; the rcgen CA is unused.
    let mut pki = TestCa::new("unused");
    pki.dir = dir;
    pki
}

#[test]
fn seed_openssl_commands_are_refused_with_the_command_that_works() {
    // Seed 000's commands as written (with -subj instead of the interactive prompts):
    // `openssl x509 -req` without extensions makes an X.509 v1 certificate without
    // subjectAltName, which no verifying TLS client accepts.
    let dir = tempfile::tempdir().unwrap();
    openssl_script(
        dir.path(),
        "openssl req -x509 -newkey rsa:4096 -keyout ca-key.pem -out ca-cert.pem -days 365 -nodes -subj /CN=ca 2>/dev/null
openssl req -newkey rsa:4096 -keyout server-key.pem -out server-req.pem -nodes -subj /CN=localhost 2>/dev/null
openssl x509 -req -in server-req.pem -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 365 2>/dev/null",
    );
    let stderr = serve_must_fail(&tls_conf(
        &dir.path().join("server-cert.pem"),
        &dir.path().join("server-key.pem"),
    ));
    assert!(stderr.contains("X.509 version 1"), "{stderr}");
    assert!(stderr.contains("-extfile server-ext.cnf"), "{stderr}");
    assert!(
        stderr.contains("subjectAltName = DNS:localhost"),
        "{stderr}"
    );
}

#[tokio::test]
async fn docs_openssl_commands_make_working_certificates() {
    // The commands of docs/security.md, verbatim.
    let dir = tempfile::tempdir().unwrap();
    openssl_script(
        dir.path(),
        "openssl req -x509 -newkey rsa:4096 -nodes -keyout ca-key.pem -out ca-cert.pem \\
  -days 365 -subj \"/CN=ThemisDB dev CA\" 2>/dev/null
printf '%s\\n' \"subjectAltName = DNS:localhost, IP:127.0.0.1\" \\
  \"extendedKeyUsage = serverAuth\" > server-ext.cnf
openssl req -newkey rsa:4096 -nodes -keyout server-key.pem -out server-req.pem \\
  -subj \"/CN=localhost\" 2>/dev/null
openssl x509 -req -in server-req.pem -CA ca-cert.pem -CAkey ca-key.pem \\
  -CAcreateserial -out server-cert.pem -days 365 -extfile server-ext.cnf 2>/dev/null
printf '%s\\n' \"extendedKeyUsage = clientAuth\" > client-ext.cnf
openssl req -newkey rsa:4096 -nodes -keyout client-key.pem -out client-req.pem \\
  -subj \"/CN=alice\" 2>/dev/null
openssl x509 -req -in client-req.pem -CA ca-cert.pem -CAkey ca-key.pem \\
  -CAcreateserial -out client-cert.pem -days 365 -extfile client-ext.cnf 2>/dev/null",
    );
    let server_cert = Issued {
        cert: dir.path().join("server-cert.pem"),
        key: dir.path().join("server-key.pem"),
    };
    let client_cert = Issued {
        cert: dir.path().join("client-cert.pem"),
        key: dir.path().join("client-key.pem"),
    };
    let pki = pki_from_dir(dir);
    let server = TestServer::start_with(|c| {
        enable_tls(c, &server_cert);
        enable_mtls(c, &pki, true);
    })
    .await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        tls_session(
            server.addr,
            client_config(&pki, versions, Some(&client_cert)),
        )
        .await
        .expect("openssl-made certificates work");
    }
    server.shutdown().await;
}

// --- Certificate rotation ---

/// Copies `from`'s certificate and key over `to`'s files, as an operator replacing
/// them in place would.
fn replace_files(from: &Issued, to: &Issued) {
    std::fs::copy(&from.cert, &to.cert).unwrap();
    std::fs::copy(&from.key, &to.key).unwrap();
}

/// The leaf certificate the server presented on `tls`.
fn served_leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone()
        .into_owned()
}

fn leaf_of(issued: &Issued) -> CertificateDer<'static> {
    load_certs(&issued.cert).remove(0)
}

/// The leaf a fresh TLS connection (with HANDSHAKE + PING) is served.
async fn leaf_served_now(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> CertificateDer<'static> {
    let mut tls = tls_connect(addr, config).await.expect("TLS connects");
    handshake_and_ping(&mut tls).await.expect("session works");
    let leaf = served_leaf(&tls);
    let _ = tls.shutdown().await;
    leaf
}

/// One PING → PONG on an already logged-in stream.
async fn ping<S>(stream: &mut S, id: u64)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let codec = FrameCodec::default();
    let mut out = BytesMut::new();
    let ping = wire::Ping { timestamp_ms: 7 };
    encode_frame(&codec, OpCode::OpPing, id, &ping, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    stream.flush().await.unwrap();
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(payload) = codec.decode(&mut buf).unwrap() {
            break wire::Envelope::decode(payload).unwrap();
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
            .await
            .expect("PONG in time")
            .unwrap();
        assert!(n > 0, "connection closed instead of PONG");
    };
    assert_eq!(frame.opcode, OpCode::OpPong as i32, "{frame:?}");
    assert_eq!(frame.request_id, id);
}

#[tokio::test]
async fn rotated_certificate_is_served_to_new_connections_while_old_ones_continue() {
    let pki = TestCa::new("Test CA");
    let served = pki.server();
    let a = pki.issue("server-a", &["127.0.0.1"], false, false);
    let b = pki.issue("server-b", &["127.0.0.1"], false, false);
    replace_files(&a, &served);
    let server = TestServer::start_with(|c| {
        enable_tls(c, &served);
        c.wire.tls.reload_interval = Duration::ZERO; // only explicit reloads here
    })
    .await;
    let handle = server.handle.as_ref().unwrap();
    let config = client_config(&pki, BOTH, None);

    let mut client1 = tls_connect(server.addr, config.clone()).await.unwrap();
    handshake_and_ping(&mut client1).await.unwrap();
    assert_eq!(served_leaf(&client1), leaf_of(&a));

    replace_files(&b, &served);
    handle.reload_tls().expect("cert B loads");
    assert_eq!(handle.tls_reload_failures(), 0);

    let mut client2 = tls_connect(server.addr, config.clone()).await.unwrap();
    handshake_and_ping(&mut client2).await.unwrap();
    assert_eq!(
        served_leaf(&client2),
        leaf_of(&b),
        "new connections get cert B"
    );

    // The connection made under cert A is untouched.
    ping(&mut client1, 10).await;
    ping(&mut client2, 10).await;
    server.shutdown().await;
}

#[tokio::test]
async fn changed_certificate_files_are_picked_up_without_a_reload_call() {
    let pki = TestCa::new("Test CA");
    let served = pki.server();
    let a = pki.issue("server-a", &["127.0.0.1"], false, false);
    let b = pki.issue("server-b", &["127.0.0.1"], false, false);
    replace_files(&a, &served);
    let server = TestServer::start_with(|c| {
        enable_tls(c, &served);
        c.wire.tls.reload_interval = Duration::from_millis(100);
    })
    .await;
    let config = client_config(&pki, BOTH, None);
    let mut client1 = tls_connect(server.addr, config.clone()).await.unwrap();
    handshake_and_ping(&mut client1).await.unwrap();
    assert_eq!(served_leaf(&client1), leaf_of(&a));

    // Written in place, not atomically: the watcher may see the new certificate with
    // the old key, fail, and must pick the pair up once the key is written too.
    replace_files(&b, &served);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while leaf_served_now(server.addr, config.clone()).await != leaf_of(&b) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher never served cert B"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ping(&mut client1, 10).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_new_certificate_keeps_the_old_one_serving() {
    let pki = TestCa::new("Test CA");
    let served = pki.server();
    let good = leaf_of(&served);
    let server = TestServer::start_with(|c| {
        enable_tls(c, &served);
        c.wire.tls.reload_interval = Duration::ZERO;
    })
    .await;
    let handle = server.handle.as_ref().unwrap();
    let config = client_config(&pki, BOTH, None);
    let original = pki.issue("original", &["127.0.0.1"], false, false);
    std::fs::copy(&served.cert, &original.cert).unwrap();
    std::fs::copy(&served.key, &original.key).unwrap();

    // Expired.
    let expired = pki.issue("expired", &["127.0.0.1"], false, true);
    replace_files(&expired, &served);
    let err = handle.reload_tls().unwrap_err().to_string();
    assert!(err.contains("expired"), "{err}");
    assert!(err.contains("tls_cert_path"), "{err}");
    assert!(err.contains(&served.cert.display().to_string()), "{err}");
    assert_eq!(handle.tls_reload_failures(), 1);
    assert_eq!(leaf_served_now(server.addr, config.clone()).await, good);

    // A new certificate with the old key.
    let other = pki.issue("other", &["127.0.0.1"], false, false);
    std::fs::copy(&other.cert, &served.cert).unwrap();
    std::fs::copy(&original.key, &served.key).unwrap();
    let err = handle.reload_tls().unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains("tls_key_path"), "{err}");
    assert_eq!(handle.tls_reload_failures(), 2);
    assert_eq!(leaf_served_now(server.addr, config.clone()).await, good);

    // Not PEM at all (a file caught mid-write looks like this).
    std::fs::write(&served.cert, b"-----BEGIN CERT").unwrap();
    let err = handle.reload_tls().unwrap_err().to_string();
    assert!(err.contains("tls_cert_path"), "{err}");
    assert_eq!(leaf_served_now(server.addr, config.clone()).await, good);

    // Fixed files load again.
    replace_files(&other, &served);
    handle.reload_tls().expect("good files load");
    assert_eq!(leaf_served_now(server.addr, config).await, leaf_of(&other));
    server.shutdown().await;
}

#[tokio::test]
async fn reload_without_tls_says_tls_is_off() {
    let server = TestServer::start().await;
    let err = server.handle.as_ref().unwrap().reload_tls().unwrap_err();
    assert!(err.to_string().contains("not enabled"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_certificates_and_keeps_the_server_running() {
    let pki = TestCa::new("Test CA");
    let served = pki.server();
    let b = pki.issue("server-b", &["127.0.0.1"], false, false);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let cert = served.cert.display().to_string();
    let key = served.key.display().to_string();
    let mut server = ServerProcess::start(
        &data_dir,
        &[
            ("THEMIS_WIRE_PROTOCOL_ENABLE_TLS", "true"),
            ("THEMIS_WIRE_PROTOCOL_TLS_CERT_PATH", &cert),
            ("THEMIS_WIRE_PROTOCOL_TLS_KEY_PATH", &key),
            ("THEMIS_WIRE_PROTOCOL_TLS_RELOAD_INTERVAL", "0"),
        ],
    );
    let config = client_config(&pki, BOTH, None);
    assert_eq!(
        leaf_served_now(server.addr, config.clone()).await,
        leaf_of(&served)
    );

    replace_files(&b, &served);
    server.signal(libc::SIGHUP);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while leaf_served_now(server.addr, config.clone()).await != leaf_of(&b) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP never made the server serve cert B"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the server"
    );
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).success());
}
