//! `themisdb cert`: a CA and certificates that openssl itself accepts, with the SANs
//! clients check, and private keys only their owner can read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn themisdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_themisdb"))
        .args(args)
        .output()
        .expect("run themisdb")
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (installed with the system's openssl package)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

#[test]
fn makes_a_ca_and_certificates_openssl_verifies_with_sans_and_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for args in [
        vec!["cert", "ca", "--out", out],
        vec![
            "cert",
            "server",
            "--out",
            out,
            "--san",
            "db.example.test",
            "--san",
            "127.0.0.1",
        ],
        vec!["cert", "client", "--out", out, "--name", "alice"],
    ] {
        let o = themisdb(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    let ca = path(dir.path(), "ca.pem");
    for cert in ["server.pem", "client-alice.pem"] {
        let o = openssl(&["verify", "-CAfile", &ca, &path(dir.path(), cert)]);
        assert!(o.status.success(), "{cert}: {}", text(&o));
    }
    let o = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-in",
        &path(dir.path(), "server.pem"),
    ]);
    let shown = text(&o);
    assert!(shown.contains("DNS:db.example.test"), "{shown}");
    assert!(shown.contains("IP Address:127.0.0.1"), "{shown}");
    assert!(shown.contains("TLS Web Server Authentication"), "{shown}");
    let o = openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-ext",
        "extendedKeyUsage",
        "-in",
        &path(dir.path(), "client-alice.pem"),
    ]);
    let shown = text(&o);
    assert!(
        shown.contains("CN = alice") || shown.contains("CN=alice"),
        "{shown}"
    );
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    // The keys match their certificates and only their owner can read them.
    for (cert, key) in [
        ("server.pem", "server-key.pem"),
        ("client-alice.pem", "client-alice-key.pem"),
        ("ca.pem", "ca-key.pem"),
    ] {
        let from_cert = openssl(&["x509", "-noout", "-pubkey", "-in", &path(dir.path(), cert)]);
        let from_key = openssl(&["pkey", "-pubout", "-in", &path(dir.path(), key)]);
        assert_eq!(from_cert.stdout, from_key.stdout, "{key} belongs to {cert}");
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
}

#[test]
fn signing_without_a_ca_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = themisdb(&["cert", "server", "--out", dir.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let shown = text(&o);
    assert!(shown.contains("ca.pem"), "{shown}");
    assert!(shown.contains("themisdb cert ca"), "{shown}");
}
