//! The Rust client over TLS and mTLS, with certificates made by `themisdb cert`; and
//! `openssl s_client` against the same server and certificates.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use themis_client::{Client, ClientOptions, Error, TlsOptions};

use common::{cert, Pki, TestServer};

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
        if mtls {
            c.wire.tls.mtls = true;
            c.wire.tls.ca_cert_path = Some(ca);
            c.wire.tls.require_client_cert = true;
        }
    })
    .await
}

fn tls(pki: &Pki, client_cert: bool) -> TlsOptions {
    TlsOptions {
        ca_cert_path: Some(pki.path("ca.pem")),
        client_cert_path: client_cert.then(|| pki.path("client-root.pem")),
        client_key_path: client_cert.then(|| pki.path("client-root-key.pem")),
        server_name: None,
    }
}

async fn connect(server: &TestServer, tls: TlsOptions) -> Result<Client, Error> {
    let options = ClientOptions {
        tls: Some(tls),
        connect_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    Client::connect_with(&server.url(), options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_works_over_tls_and_mtls_with_themisdb_cert_certificates() {
    let pki = Pki::new();
    let plain_tls = server(&pki, false).await;
    let client = connect(&plain_tls, tls(&pki, false)).await.expect("TLS");
    client.ping().await.unwrap();
    let meta = client
        .collection("over_tls")
        .insert(&json!({ "secret": true }))
        .await
        .unwrap();
    let back: Option<serde_json::Value> =
        client.collection("over_tls").get(&meta.key).await.unwrap();
    assert_eq!(back.unwrap()["secret"], true);
    plain_tls.shutdown().await;

    let mtls = server(&pki, true).await;
    let client = connect(&mtls, tls(&pki, true)).await.expect("mTLS");
    client.ping().await.unwrap();
    // Without a client certificate the server refuses the handshake.
    let refused = connect(&mtls, tls(&pki, false)).await;
    assert!(refused.is_err(), "mTLS without a client certificate");
    client
        .ping()
        .await
        .expect("the good connection is unaffected");
    mtls.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_not_trusted() {
    let pki = Pki::new();
    let other = tempfile::tempdir().unwrap();
    cert(other.path(), &["ca"]);
    let server = server(&pki, false).await;
    let options = TlsOptions {
        ca_cert_path: Some(other.path().join("ca.pem")),
        ..tls(&pki, false)
    };
    match connect(&server, options).await {
        Err(Error::Tls(m)) => assert!(m.contains("handshake"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // A missing CA file is named.
    let options = TlsOptions {
        ca_cert_path: Some(pki.path("missing.pem")),
        ..tls(&pki, false)
    };
    match connect(&server, options).await {
        Err(Error::Tls(m)) => assert!(m.contains("missing.pem"), "{m}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_verifies_the_server_and_passes_mtls() {
    let pki = Pki::new();
    let server = server(&pki, true).await;
    let addr = server.addr.to_string();
    let ca = pki.path("ca.pem");
    let (cert, key) = (pki.path("client-root.pem"), pki.path("client-root-key.pem"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                "-verify_return_error",
                "-brief",
            ])
            .arg("-CAfile")
            .arg(&ca)
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl s_client")
    })
    .await
    .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("Verification: OK") || shown.contains("Verify return code: 0"),
        "{shown}"
    );
    server.shutdown().await;
}
