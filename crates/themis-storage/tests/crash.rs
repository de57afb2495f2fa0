//! Crash recovery: a writer process is killed (SIGKILL) in the middle of concurrent
//! bulk inserts; on reopen every acknowledged bulk is complete and every bulk is
//! either complete or absent.
//!
//! The test re-runs its own binary as the writer (selected by an environment
//! variable), so the kill hits a real process with fjall's files open.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use bytes::Bytes;
use themis_storage::{DocumentStore, StoreOptions, WaitDurable};

const CHILD_ENV: &str = "THEMIS_STORAGE_CRASH_CHILD_DIR";
const TASKS: usize = 8;
const PER_BULK: usize = 3;
const ACKS_BEFORE_KILL: usize = 400;

fn key(task: usize, n: usize, j: usize) -> String {
    format!("t{task}-{n}-{j}")
}

fn run_writer(dir: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = std::sync::Arc::new(DocumentStore::open(StoreOptions::new(dir)).expect("open"));
        store
            .create_collection("_system", "c")
            .wait()
            .await
            .expect("create");
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for n in 0.. {
                    let docs = (0..PER_BULK)
                        .map(|j| {
                            Bytes::from(format!(
                                r#"{{"_key":"{}","pad":"{}"}}"#,
                                key(task, n, j),
                                "x".repeat(200)
                            ))
                        })
                        .collect();
                    store
                        .insert("_system", "c", docs, false)
                        .wait()
                        .await
                        .expect("insert");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {task} {n}").expect("stdout");
                    out.flush().expect("flush");
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
    });
}

#[test]
fn killed_writer_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_writer(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "killed_writer_loses_nothing_acknowledged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked: Vec<(usize, usize)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let mut parts = line.split_whitespace();
        if parts.next() != Some("ack") {
            continue;
        }
        let task: usize = parts.next().unwrap().parse().unwrap();
        let n: usize = parts.next().unwrap().parse().unwrap();
        acked.push((task, n));
        if acked.len() >= ACKS_BEFORE_KILL {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acked.len(), ACKS_BEFORE_KILL, "writer stopped early");

    let store = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
    for &(task, n) in &acked {
        let keys: Vec<String> = (0..PER_BULK).map(|j| key(task, n, j)).collect();
        let got = store.get("_system", "c", &keys).unwrap();
        assert!(
            got.iter().all(Option::is_some),
            "acknowledged bulk t{task}-{n} lost: {got:?}"
        );
    }
    // Bulks in flight at the kill are all-or-nothing.
    let max_n = acked.iter().map(|a| a.1).max().unwrap_or(0) + 50;
    let mut stored = 0;
    for task in 0..TASKS {
        for n in 0..max_n {
            let keys: Vec<String> = (0..PER_BULK).map(|j| key(task, n, j)).collect();
            let got = store.get("_system", "c", &keys).unwrap();
            let present = got.iter().filter(|g| g.is_some()).count();
            assert!(
                present == 0 || present == PER_BULK,
                "bulk t{task}-{n} partially stored"
            );
            stored += present / PER_BULK;
        }
    }
    eprintln!(
        "{} bulks acknowledged before the kill, {stored} found after",
        acked.len()
    );
    assert!(stored >= acked.len());
}
