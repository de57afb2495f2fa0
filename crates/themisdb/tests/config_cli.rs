//! `themisdb serve` with config files, end to end through the binary: warnings for
//! unknown keys are logged; a bad value, or TLS files that cannot be used, stop it
//! before it listens, naming the file and line (or the file and the problem); flags
//! beat the file.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

fn serve(conf: &str, extra: &[&str]) -> (std::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("themis.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_themisdb"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(extra)
        .env("THEMIS_ROOT_PASSWORD", "pw")
        .env("THEMIS_SERVER_BCRYPT_COST", "4")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, dir)
}

/// Waits for `child` to exit with a failure (it must refuse to start); its stderr.
fn refused(child: &mut std::process::Child) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server should have refused to start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[test]
fn seed_tls_example_with_a_typo_warns_and_refuses_its_placeholder_paths() {
    // Seed 000's TLS example as written, plus a misspelt key. Its certificate paths
    // are placeholders, so the server must refuse to start, naming the file.
    let conf = "[wire_protocol]
enabled = true
bind_address = 0.0.0.0
port = 8766
# TLS Configuration
enable_tls = true
tls_cert_path = /path/to/server-cert.pem
tls_key_path = /path/to/server-key.pem
tls_min_version = TLSv1.2 # or TLSv1.3
max_conection = 10
";
    // Flags beat the file: loopback and a free port instead of 0.0.0.0:8766.
    let (mut child, _dir) = serve(conf, &["--bind", "127.0.0.1", "--port", "0"]);
    let stderr = refused(&mut child);
    assert!(
        stderr.contains("tls_cert_path = /path/to/server-cert.pem: file not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("themis.conf:10"),
        "the warning names the line: {stderr}"
    );
    assert!(stderr.contains("max_conection"), "{stderr}");
    assert!(
        stderr.contains("did you mean 'max_connections'"),
        "{stderr}"
    );
}

#[test]
fn bad_value_refuses_to_start_naming_the_line() {
    let conf = "[wire_protocol]\nport = 8766\nmax_connections = lots\n";
    let (mut child, _dir) = serve(conf, &["--port", "0"]);
    let stderr = refused(&mut child);
    assert!(stderr.contains("themis.conf:3"), "{stderr}");
    assert!(stderr.contains("lots"), "{stderr}");
    assert!(stderr.contains("max_connections"), "{stderr}");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        !stdout.contains("listening"),
        "it must not listen: {stdout}"
    );
}

#[test]
fn bad_flag_value_names_the_flag() {
    let (mut child, _dir) = serve("", &["--port", "eighty"]);
    let status = child.wait().unwrap();
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("--port"), "{stderr}");
    assert!(stderr.contains("eighty"), "{stderr}");
}
