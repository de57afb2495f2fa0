//! TLS settings in a `themis://` URL's query string, against a real TLS server with
//! certificates made by `themisdb cert`: a CA file, mTLS, the server name, and the
//! system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR`, through the `themisdb` binary).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use themis_client::{Client, ClientOptions, Error};

use common::{cert, Pki, TestServer, ROOT_PASSWORD};

async fn server(pki: &Pki, mtls: bool) -> TestServer {
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server-key.pem"),
        pki.path("ca.pem"),
    );
    TestServer::start_with(move |c| {
        c.wire.tls.enabled = true;
        c.wire.tls.cert_path = Some(cert);
        c.wire.tls.key_path = Some(key);
        // Plaintext shares the port; refused here, so a plain connection shows.
        c.wire.tls.required = true;
        if mtls {
            c.wire.tls.mtls = true;
            c.wire.tls.ca_cert_path = Some(ca);
            c.wire.tls.require_client_cert = true;
        }
    })
    .await
}

/// Percent-encodes everything but unreserved characters; with `keep_slash`, '/'
/// stays as it is (legal in a query).
fn encode(path: &Path, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in path.to_str().expect("UTF-8 temp path").bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `themis://root:<pw>@localhost:<port>/?<query>`
fn url(server: &TestServer, query: &str) -> String {
    format!(
        "themis://root:{ROOT_PASSWORD}@localhost:{}/?{query}",
        server.addr.port()
    )
}

async fn connect(url: &str) -> Result<Client, Error> {
    Client::connect_with(url, ClientOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_in_the_url_turns_tls_on() {
    let pki = Pki::new();
    let server = server(&pki, false).await;

    let ca = encode(&pki.path("ca.pem"), true);
    let client = connect(&url(&server, &format!("ssl_ca_cert_path={ca}")))
        .await
        .expect("TLS with the CA from the URL");
    client.ping().await.unwrap();

    // Fully percent-encoded, with the other accepted settings.
    let ca = encode(&pki.path("ca.pem"), false);
    let client = connect(&url(
        &server,
        &format!(
            "enable_ssl=true&ssl_ca_cert_path={ca}&ssl_server_name=localhost\
             &connect_timeout=5s&request_timeout=30000ms"
        ),
    ))
    .await
    .expect("TLS with every setting");
    client.ping().await.unwrap();

    // A name the server's certificate does not carry fails the handshake, naming it.
    match connect(&url(
        &server,
        &format!("ssl_ca_cert_path={ca}&ssl_server_name=other.example"),
    ))
    .await
    {
        Err(Error::Tls(m)) => assert!(m.contains("other.example"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }

    // enable_ssl=false connects in plaintext, which this server refuses.
    match connect(&url(&server, "enable_ssl=false&connect_timeout=3s")).await {
        Err(e) => assert!(e.to_string().contains("TLS"), "{e}"),
        Ok(_) => panic!("plaintext against a require_tls server"),
    }

    // A missing CA file is named.
    let missing = encode(&pki.path("missing.pem"), true);
    match connect(&url(&server, &format!("ssl_ca_cert_path={missing}"))).await {
        Err(Error::Tls(m)) => assert!(m.contains("missing.pem"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_through_the_url() {
    let pki = Pki::new();
    let server = server(&pki, true).await;
    let ca = encode(&pki.path("ca.pem"), true);
    let cert = encode(&pki.path("client-root.pem"), false);
    let key = encode(&pki.path("client-root-key.pem"), true);

    let client = connect(&url(
        &server,
        &format!("ssl_ca_cert_path={ca}&ssl_cert_path={cert}&ssl_key_path={key}&enable_mtls=1"),
    ))
    .await
    .expect("mTLS with the client certificate from the URL");
    client.ping().await.unwrap();

    // Without a client certificate the server refuses.
    let refused = connect(&url(&server, &format!("ssl_ca_cert_path={ca}"))).await;
    assert!(refused.is_err(), "mTLS without a client certificate");

    // enable_mtls=false drops a client certificate given in the options.
    let options = ClientOptions {
        tls: Some(themis_client::TlsOptions {
            ca_cert_path: Some(pki.path("ca.pem")),
            client_cert_path: Some(pki.path("client-root.pem")),
            client_key_path: Some(pki.path("client-root-key.pem")),
            server_name: None,
        }),
        ..ClientOptions::default()
    };
    let dropped = Client::connect_with(&url(&server, "enable_mtls=false"), options.clone()).await;
    assert!(
        dropped.is_err(),
        "enable_mtls=false sends no client certificate"
    );
    let kept = Client::connect_with(&url(&server, "request_timeout=10s"), options)
        .await
        .expect("the options' client certificate");
    kept.ping().await.unwrap();

    // Half of a client certificate is refused before connecting.
    match connect(&url(&server, &format!("ssl_cert_path={cert}"))).await {
        Err(Error::InvalidUrl { reason, .. }) => {
            assert!(reason.contains("ssl_key_path"), "{reason}")
        }
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
    server.shutdown().await;
}

/// `themisdb query --url <url> 'RETURN 1'` with `env` set and `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` removed first.
async fn themisdb_query(url: String, env: Vec<(&'static str, PathBuf)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_themisdb"));
        cmd.args(["query", "--url", &url, "RETURN 1"])
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("THEMIS_URL")
            .env_remove("THEMIS_PASSWORD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run themisdb query")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_the_system_roots_are_trusted() {
    let pki = Pki::new();
    let server = server(&pki, false).await;
    let url = url(&server, "enable_ssl=true");

    // Our CA as the system's roots.
    let out = themisdb_query(url.clone(), vec![("SSL_CERT_FILE", pki.path("ca.pem"))]).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "1", "stderr: {stderr}");

    // No roots at all: refused with a TLS error that says so.
    let empty = tempfile::tempdir().unwrap();
    let out = themisdb_query(url.clone(), vec![("SSL_CERT_DIR", empty.path().into())]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no roots: {stderr}");
    assert!(
        stderr.contains("TLS") && stderr.contains("trusted root certificates"),
        "{stderr}"
    );
    assert!(stderr.contains("ssl_ca_cert_path"), "{stderr}");

    // Roots that did not sign the server's certificate: the handshake fails.
    let other = tempfile::tempdir().unwrap();
    cert(other.path(), &["ca"]);
    let out = themisdb_query(url, vec![("SSL_CERT_FILE", other.path().join("ca.pem"))]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "other CA: {stderr}");
    assert!(
        stderr.contains("handshake") && stderr.contains("the system's trusted roots"),
        "{stderr}"
    );
    server.shutdown().await;
}
