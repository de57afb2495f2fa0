//! `themisdb bench` (the real binary) against a real server process: the update,
//! delete and mixed workloads, zipfian keys, the open loop, warm-up, delete running
//! out of documents, the JSON report's fields, and flag combinations it refuses.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::ServerProcess;
use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_themisdb"))
        .arg("bench")
        .args(args)
        .env_remove("THEMIS_URL")
        .output()
        .expect("run themisdb bench")
}

/// Runs the bench with `--json` against `url`; returns one object per operation.
fn bench_json(url: &str, args: &[&str]) -> Vec<Value> {
    let out = bench(&[&["--url", url, "--json"], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn server() -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    (dir, server)
}

#[track_caller]
fn assert_clean(r: &Value, op: &str) {
    assert_eq!(r["op"], op, "{r}");
    assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["errors_by_code"], serde_json::json!({}), "{r}");
    for field in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert!(r[field].as_u64().is_some(), "{field} missing: {r}");
    }
    assert!(
        r["p50_us"].as_u64() <= r["p90_us"].as_u64()
            && r["p99_us"].as_u64() <= r["max_us"].as_u64(),
        "{r}"
    );
}

#[test]
fn update_delete_mixed_run_clean_with_sizes_and_bytes() {
    let (_dir, server) = server();
    let reports = bench_json(
        &server.url(),
        &[
            "--op",
            "update,delete,mixed",
            "-c",
            "2",
            "-i",
            "2",
            "-n",
            "300",
            // The old name of --keys still works.
            "--get-keys",
            "200",
            "--doc-size",
            "400",
            "--read-ratio",
            "0.7",
        ],
    );
    assert_eq!(reports.len(), 3);
    for (r, op) in reports.iter().zip(["update", "delete", "mixed"]) {
        assert_clean(r, op);
        assert_eq!(r["requests"], 300, "{r}");
        assert_eq!(r["mode"], "closed");
        assert_eq!(r["retry_writes"], true, "the client's default");
        assert!(r["bytes_sent_per_op"].as_f64().unwrap() > 10.0, "{r}");
        assert!(r["bytes_received_per_op"].as_f64().unwrap() > 10.0, "{r}");
        let size = r["doc_size"].as_u64().unwrap();
        assert!((390..=410).contains(&size), "{r}");
    }
    // Deletes: 300 pre-inserted (--requests > --keys), each deleted once.
    assert_eq!(reports[1]["exhausted"], false);
    // Mixed: reads and updates apart, about 70 % reads.
    let mixed = &reports[2];
    assert_eq!(mixed["read_ratio"], 0.7);
    let reads = mixed["reads"]["requests"].as_u64().unwrap();
    let writes = mixed["writes"]["requests"].as_u64().unwrap();
    assert_eq!(reads + writes, 300);
    assert!((150..=260).contains(&reads), "{mixed}");
    // Gets of the padded documents bring back the padding.
    let get = bench_json(
        &server.url(),
        &[
            "--op",
            "get",
            "-c",
            "1",
            "-n",
            "50",
            "--keys",
            "200",
            "--doc-size",
            "400",
        ],
    );
    assert_clean(&get[0], "get");
    assert!(
        get[0]["bytes_received_per_op"].as_f64().unwrap() > 400.0,
        "{}",
        get[0]
    );
}

#[test]
fn zipfian_open_loop_with_warmup_keeps_the_rate() {
    let (_dir, server) = server();
    let reports = bench_json(
        &server.url(),
        &[
            "--op",
            "get,mixed",
            "--distribution",
            "zipfian",
            "--keys",
            "500",
            "-c",
            "2",
            "-i",
            "2",
            "--rate",
            "400",
            "-d",
            "1",
            "--warmup",
            "0.3",
            "--no-retry-writes",
        ],
    );
    assert_eq!(reports.len(), 2);
    for (r, op) in reports.iter().zip(["get", "mixed"]) {
        assert_clean(r, op);
        assert_eq!(r["mode"], "open", "{r}");
        assert_eq!(r["target_rate"], 400.0, "{r}");
        assert_eq!(r["distribution"], "zipfian", "{r}");
        assert_eq!(r["zipf_theta"], 0.99, "{r}");
        assert_eq!(r["warmup_seconds"], 0.3, "{r}");
        assert_eq!(r["retry_writes"], false, "{r}");
        // 1 s at 400/s (the warm-up's requests are not counted).
        let n = r["requests"].as_u64().unwrap();
        assert!((300..=420).contains(&n), "{r}");
        let achieved = r["achieved_rate"].as_f64().unwrap();
        assert!((300.0..=440.0).contains(&achieved), "{r}");
    }
}

#[test]
fn delete_reports_when_it_runs_out_of_documents() {
    let (_dir, server) = server();
    let started = Instant::now();
    let r = &bench_json(
        &server.url(),
        &["--op", "delete", "-c", "2", "-d", "20", "--keys", "60"],
    )[0];
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped at exhaustion"
    );
    assert_eq!(r["exhausted"], true, "{r}");
    assert_eq!(r["requests"], 60, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
}

#[test]
fn table_output_names_the_settings_and_splits_mixed() {
    let (_dir, server) = server();
    let out = bench(&[
        "--url",
        &server.url(),
        "--op",
        "mixed,ping",
        "-c",
        "2",
        "-n",
        "100",
        "--keys",
        "50",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("retry_writes on, closed loop"), "{stdout}");
    assert!(stdout.contains("keys: 50 (uniform)"), "{stdout}");
    assert!(stdout.contains("read ratio 0.9"), "{stdout}");
    for row in ["mixed ", "  reads ", "  writes ", "ping "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no {row:?} row: {stdout}"
        );
    }
    assert!(
        stdout.contains("p90 us") && stdout.contains("out B/op"),
        "{stdout}"
    );
    // Progress goes to a terminal only: nothing on stderr here.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_flag_combinations_are_refused_before_connecting() {
    // Nothing listens on port 1: these must fail on the flags, not on the connection.
    let url = "themis://root:x@127.0.0.1:1";
    let cases: &[(&[&str], &str)] = &[
        (
            &["--op", "get", "--read-ratio", "0.5"],
            "--read-ratio only applies to --op mixed",
        ),
        (
            &["--op", "mixed", "--read-ratio", "1.5"],
            "--read-ratio must be between 0 and 1",
        ),
        (
            &["--op", "fanout", "--rate", "100"],
            "--rate (open loop) does not apply to fanout",
        ),
        (
            &["--op", "get", "--rate", "0"],
            "--rate must be a positive number",
        ),
        (&["--op", "get", "--keys", "0"], "--keys must be at least 1"),
        (
            &["--op", "insert", "--doc-size", "10"],
            "--doc-size must be at least",
        ),
        (
            &["--op", "ping", "--warmup=-1"],
            "--warmup must be zero or a positive",
        ),
    ];
    for (args, needle) in cases {
        let out = bench(&[&["--url", url], *args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("cannot connect"), "{args:?}: {stderr}");
    }
    // An unknown distribution is clap's to refuse, naming the choices.
    let out = bench(&["--url", url, "--distribution", "pareto"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("uniform") && stderr.contains("zipfian"),
        "{stderr}"
    );
}

#[test]
fn help_documents_tls_and_the_new_flags() {
    let out = bench(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "enable_ssl=true",
        "ssl_ca_cert_path",
        "--rate",
        "--warmup",
        "--distribution",
        "--doc-size",
        "--read-ratio",
        "--keys",
        "--no-retry-writes",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
}

/// `--op idle` holds its connections open for the duration, logged in with an API key
/// (no bcrypt per connection), and says when all are open.
#[test]
fn idle_holds_connections_logged_in_with_an_api_key() {
    let (_dir, server) = server();
    let created = Command::new(env!("CARGO_BIN_EXE_themisdb"))
        .args(["apikey", "create", "--url", &server.url(), "--json"])
        .env_remove("THEMIS_URL")
        .output()
        .expect("run themisdb apikey create");
    assert!(created.status.success(), "{created:?}");
    let key: Value = serde_json::from_slice(&created.stdout).expect("key JSON");
    let key = key["key"].as_str().expect("key").to_owned();
    // The URL names the server only: the key is the login.
    let url = format!("themis://{}", server.addr);
    let out = bench(&[
        "--url",
        &url,
        "--api-key",
        &key,
        "--op",
        "idle",
        "-c",
        "20",
        "--duration",
        "0.5",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ready: 20 connections"),
        "{out:?}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("idle JSON");
    assert_eq!(report["op"], "idle");
    assert_eq!(report["connections"], 20);
    assert_eq!(report["still_open"], 20);
}
