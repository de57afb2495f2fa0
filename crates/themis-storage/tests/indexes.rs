//! Secondary indexes on real fjall storage: definitions, uniqueness, sparse rules,
//! filling, scans, query transactions, reopen and concurrency.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use themis_storage::{
    CollectionHandle, DocumentStore, IndexInfo, IndexRange, QuerySnapshot, StorageError,
    StoreOptions, UpdateMode, WaitDurable,
};

const DB: &str = "_system";

fn open(dir: &tempfile::TempDir) -> DocumentStore {
    DocumentStore::open(StoreOptions::new(dir.path())).expect("open store")
}

fn doc(v: Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&v).expect("serialize"))
}

fn fields(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| s.to_string()).collect()
}

async fn insert(
    s: &DocumentStore,
    coll: &str,
    docs: Vec<Value>,
) -> Result<Vec<String>, StorageError> {
    let metas = s
        .insert(DB, coll, docs.into_iter().map(doc).collect(), true)
        .wait()
        .await?;
    Ok(metas.into_iter().map(|m| m.key).collect())
}

async fn index(
    s: &DocumentStore,
    coll: &str,
    name: &str,
    f: &[&str],
    unique: bool,
    sparse: bool,
) -> Result<IndexInfo, StorageError> {
    s.create_index(DB, coll, name, fields(f), unique, sparse)
        .wait()
        .await
}

fn parse(b: &Bytes) -> Value {
    serde_json::from_slice(b).expect("stored JSON")
}

/// Runs an index scan and returns the documents' `_key`s in scan order.
fn scan_keys(
    snap: &QuerySnapshot,
    c: &CollectionHandle,
    idx: &IndexInfo,
    range: IndexRange,
    reverse: bool,
) -> Vec<String> {
    snap.index_scan(c, idx, range, reverse)
        .map(|d| {
            let d = parse(&d.expect("scan item"));
            d["_key"].as_str().expect("_key").to_string()
        })
        .collect()
}

fn index_named(s: &DocumentStore, coll: &str, name: &str) -> IndexInfo {
    s.list_indexes(DB, coll)
        .expect("list")
        .into_iter()
        .find(|i| i.name == name)
        .expect("index exists")
}

fn conflict_message<T: std::fmt::Debug>(r: Result<T, StorageError>) -> String {
    match r {
        Err(StorageError::Conflict(m)) => m,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn invalid_message<T: std::fmt::Debug>(r: Result<T, StorageError>) -> String {
    match r {
        Err(StorageError::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

/// AQL's order (null < bool < number < string < array < object; arrays padded with
/// null; objects over the sorted union of names), as a reference for scans.
fn aql_cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    const NULL: Value = Value::Null;
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap()
            .partial_cmp(&y.as_f64().unwrap())
            .unwrap(),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Array(x), Value::Array(y)) => (0..x.len().max(y.len()))
            .map(|i| aql_cmp(x.get(i).unwrap_or(&NULL), y.get(i).unwrap_or(&NULL)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal),
        (Value::Object(x), Value::Object(y)) => {
            let mut names: Vec<&String> = x.keys().chain(y.keys()).collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|n| aql_cmp(x.get(n).unwrap_or(&NULL), y.get(n).unwrap_or(&NULL)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn field_of(d: &Value, path: &str) -> Value {
    let mut cur = d;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return Value::Null,
        }
    }
    cur.clone()
}

// ---- definitions ------------------------------------------------------------------

#[tokio::test]
async fn create_list_drop() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_collection(DB, "users").wait().await.unwrap();
    assert!(s.list_indexes(DB, "users").unwrap().is_empty());

    let a = index(&s, "users", "by_email", &["email"], true, false)
        .await
        .unwrap();
    assert_eq!(a.name, "by_email");
    assert_eq!(a.fields, vec!["email"]);
    assert!(a.unique && !a.sparse);
    assert!(a.created_at_ms > 0);
    let b = index(
        &s,
        "users",
        "by_city",
        &["address.city", "age"],
        false,
        true,
    )
    .await
    .unwrap();
    assert!(b.id > a.id, "ids increase: {a:?} {b:?}");
    let listed = s.list_indexes(DB, "users").unwrap();
    assert_eq!(listed, vec![a.clone(), b.clone()]);

    // Taken name, same definition under another name.
    let m = conflict_message(index(&s, "users", "by_email", &["x"], false, false).await);
    assert!(m.contains("'by_email' already exists"), "{m}");
    let m = conflict_message(index(&s, "users", "email2", &["email"], true, false).await);
    assert!(m.contains("by_email") && m.contains("same fields"), "{m}");
    // Same fields, other options: allowed.
    index(&s, "users", "email_plain", &["email"], false, false)
        .await
        .unwrap();

    s.drop_index(DB, "users", "by_email").wait().await.unwrap();
    let names: Vec<String> = s
        .list_indexes(DB, "users")
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["by_city", "email_plain"]);
    // A recreated index gets a fresh id.
    let again = index(&s, "users", "by_email", &["email"], true, false)
        .await
        .unwrap();
    assert!(again.id > b.id);

    match s.drop_index(DB, "users", "nope").wait().await {
        Err(StorageError::NotFound(m)) => assert!(m.contains("'nope'"), "{m}"),
        other => panic!("{other:?}"),
    }
    match index(&s, "missing", "i", &["a"], false, false).await {
        Err(StorageError::NotFound(m)) => assert!(m.contains("'missing'"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.list_indexes(DB, "missing"),
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn bad_definitions_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_collection(DB, "c").wait().await.unwrap();
    let m = invalid_message(index(&s, "c", "_hidden", &["a"], false, false).await);
    assert!(m.contains("reserved"), "{m}");
    let m = invalid_message(index(&s, "c", "primary", &["a"], false, false).await);
    assert!(m.contains("reserved"), "{m}");
    invalid_message(index(&s, "c", "", &["a"], false, false).await);
    invalid_message(index(&s, "c", "a b", &["a"], false, false).await);
    let m = invalid_message(index(&s, "c", "i", &[], false, false).await);
    assert!(m.contains("at least one field"), "{m}");
    let m = invalid_message(index(&s, "c", "i", &["a..b"], false, false).await);
    assert!(m.contains("attribute path"), "{m}");
    let nine = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let m = invalid_message(index(&s, "c", "i", &nine, false, false).await);
    assert!(m.contains("at most 8"), "{m}");
    let m = invalid_message(index(&s, "c", "i", &["a", "a"], false, false).await);
    assert!(m.contains("twice"), "{m}");
    let m = invalid_message(s.drop_index(DB, "c", "primary").wait().await);
    assert!(m.contains("cannot be dropped"), "{m}");
    assert!(s.list_indexes(DB, "c").unwrap().is_empty());
}

// ---- uniqueness -------------------------------------------------------------------

#[tokio::test]
async fn unique_violations_on_every_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_collection(DB, "users").wait().await.unwrap();
    index(&s, "users", "by_email", &["email"], true, false)
        .await
        .unwrap();
    insert(&s, "users", vec![json!({"_key": "k1", "email": "a@b"})])
        .await
        .unwrap();

    // Insert.
    let m =
        conflict_message(insert(&s, "users", vec![json!({"_key": "k2", "email": "a@b"})]).await);
    assert!(
        m.starts_with(
            "unique constraint violated: index 'by_email' on users already has a document with email = \"a@b\" (_key 'k1')"
        ),
        "{m}"
    );
    // Bulk: a clash with a stored document, and a clash inside the bulk; all or nothing.
    let m = conflict_message(
        insert(
            &s,
            "users",
            vec![
                json!({"_key": "k3", "email": "c@d"}),
                json!({"email": "a@b"}),
            ],
        )
        .await,
    );
    assert!(m.contains("position 1") && m.contains("'k1'"), "{m}");
    let m = conflict_message(
        insert(
            &s,
            "users",
            vec![
                json!({"_key": "k4", "email": "x@y"}),
                json!({"_key": "k5", "email": "e@f"}),
                json!({"_key": "k6", "email": "x@y"}),
            ],
        )
        .await,
    );
    assert!(m.contains("position 2") && m.contains("'k4'"), "{m}");
    let got = s
        .get(DB, "users", &fields(&["k3", "k4", "k5", "k6"]))
        .unwrap();
    assert!(got.iter().all(Option::is_none), "failed bulks left nothing");

    // Update (merge and replace) onto a taken value fails; onto its own value works.
    insert(&s, "users", vec![json!({"_key": "k2", "email": "z@z"})])
        .await
        .unwrap();
    for mode in [UpdateMode::Merge, UpdateMode::Replace] {
        let m = conflict_message(
            s.update(DB, "users", "k2", doc(json!({"email": "a@b"})), mode, None)
                .wait()
                .await,
        );
        assert!(m.contains("(_key 'k1')"), "{m}");
    }
    s.update(
        DB,
        "users",
        "k1",
        doc(json!({"email": "a@b", "n": 1})),
        UpdateMode::Replace,
        None,
    )
    .wait()
    .await
    .unwrap();
    // Freeing a value makes it available.
    s.update(
        DB,
        "users",
        "k1",
        doc(json!({"email": "new@b"})),
        UpdateMode::Merge,
        None,
    )
    .wait()
    .await
    .unwrap();
    s.update(
        DB,
        "users",
        "k2",
        doc(json!({"email": "a@b"})),
        UpdateMode::Merge,
        None,
    )
    .wait()
    .await
    .unwrap();
    s.delete(DB, "users", &fields(&["k2"]), None)
        .wait()
        .await
        .unwrap();
    insert(&s, "users", vec![json!({"_key": "k7", "email": "a@b"})])
        .await
        .unwrap();
    // Equal numbers are equal values: 1 and 1.0 clash.
    index(&s, "users", "by_m", &["m"], true, true)
        .await
        .unwrap();
    insert(&s, "users", vec![json!({"m": 1, "email": "m1"})])
        .await
        .unwrap();
    let m = conflict_message(insert(&s, "users", vec![json!({"m": 1.0, "email": "m2"})]).await);
    assert!(m.contains("by_m") && m.contains("m = 1.0"), "{m}");
}

#[tokio::test]
async fn nulls_in_unique_and_sparse_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_collection(DB, "c").wait().await.unwrap();
    index(&s, "c", "dense", &["a"], true, false).await.unwrap();
    index(&s, "c", "thin", &["b"], true, true).await.unwrap();
    // Non-sparse unique: a missing attribute is null, and null is a value.
    insert(&s, "c", vec![json!({"_key": "n1", "b": 1})])
        .await
        .unwrap();
    let m = conflict_message(insert(&s, "c", vec![json!({"_key": "n2", "a": null, "b": 2})]).await);
    assert!(m.contains("index 'dense'") && m.contains("a = null"), "{m}");
    // Sparse unique: null and missing never conflict.
    insert(
        &s,
        "c",
        vec![json!({"a": 1}), json!({"a": 2, "b": null}), json!({"a": 3})],
    )
    .await
    .unwrap();
    let snap = s.snapshot().unwrap();
    let c = snap.collection(DB, "c").unwrap();
    let thin = index_named(&s, "c", "thin");
    assert_eq!(
        scan_keys(&snap, &c, &thin, IndexRange::all(), false),
        vec!["n1"]
    );
    assert!(scan_keys(&snap, &c, &thin, IndexRange::eq(vec![Value::Null]), false).is_empty());
    let dense = index_named(&s, "c", "dense");
    assert_eq!(
        scan_keys(&snap, &c, &dense, IndexRange::all(), false).len(),
        4
    );
}

#[tokio::test]
async fn sparse_compound_index_leaves_out_documents_with_any_null() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    insert(
        &s,
        "c",
        vec![
            json!({"_key": "both", "a": 1, "b": 1}),
            json!({"_key": "no_b", "a": 1}),
            json!({"_key": "null_a", "a": null, "b": 1}),
            json!({"_key": "none"}),
            json!({"_key": "deep", "a": 2, "b": {"x": null}}),
        ],
    )
    .await
    .unwrap();
    let sparse = index(&s, "c", "ab_sparse", &["a", "b"], false, true)
        .await
        .unwrap();
    let dense = index(&s, "c", "ab_dense", &["a", "b"], false, false)
        .await
        .unwrap();
    let snap = s.snapshot().unwrap();
    let c = snap.collection(DB, "c").unwrap();
    assert_eq!(
        scan_keys(&snap, &c, &sparse, IndexRange::all(), false),
        vec!["both", "deep"]
    );
    // Dense: nulls first (null < numbers), then by a, b, _key.
    assert_eq!(
        scan_keys(&snap, &c, &dense, IndexRange::all(), false),
        vec!["none", "null_a", "no_b", "both", "deep"]
    );
    // Updating a document in and out of the sparse index.
    s.update(
        DB,
        "c",
        "no_b",
        doc(json!({"b": 0})),
        UpdateMode::Merge,
        None,
    )
    .wait()
    .await
    .unwrap();
    s.update(
        DB,
        "c",
        "both",
        doc(json!({"a": null})),
        UpdateMode::Merge,
        None,
    )
    .wait()
    .await
    .unwrap();
    let snap = s.snapshot().unwrap();
    assert_eq!(
        scan_keys(&snap, &c, &sparse, IndexRange::all(), false),
        vec!["no_b", "deep"]
    );
}

// ---- creating over existing documents ---------------------------------------------

#[tokio::test]
async fn creating_an_index_fills_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let docs: Vec<Value> = (0..3000)
        .map(|i| json!({"_key": format!("k{i:05}"), "n": (i * 7919) % 3000, "g": i % 10}))
        .collect();
    for chunk in docs.chunks(500) {
        insert(&s, "c", chunk.to_vec()).await.unwrap();
    }
    let by_n = index(&s, "c", "by_n", &["n"], true, false).await.unwrap();
    let by_g = index(&s, "c", "by_g", &["g"], false, false).await.unwrap();
    let snap = s.snapshot().unwrap();
    let c = snap.collection(DB, "c").unwrap();
    let ns: Vec<i64> = snap
        .index_scan(&c, &by_n, IndexRange::all(), false)
        .map(|d| parse(&d.unwrap())["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, (0..3000).collect::<Vec<i64>>());
    let in_g3 = scan_keys(&snap, &c, &by_g, IndexRange::eq(vec![json!(3)]), false);
    assert_eq!(in_g3.len(), 300);
    let mut sorted = in_g3.clone();
    sorted.sort();
    assert_eq!(in_g3, sorted, "equal values come in _key order");
    // And the filled index is maintained from then on.
    let m = conflict_message(insert(&s, "c", vec![json!({"n": 5})]).await);
    assert!(m.contains("by_n"), "{m}");
}

#[tokio::test]
async fn unique_index_over_duplicates_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    insert(
        &s,
        "users",
        vec![
            json!({"_key": "a", "email": "x@y"}),
            json!({"_key": "b", "email": "other"}),
            json!({"_key": "c", "email": "x@y"}),
        ],
    )
    .await
    .unwrap();
    let m = conflict_message(index(&s, "users", "by_email", &["email"], true, false).await);
    assert!(
        m.contains("by_email")
            && m.contains("'a'")
            && m.contains("'c'")
            && m.contains("email = \"x@y\""),
        "{m}"
    );
    assert!(s.list_indexes(DB, "users").unwrap().is_empty());
    // Writes are not affected, and the name is free.
    insert(&s, "users", vec![json!({"email": "x@y"})])
        .await
        .unwrap();
    index(&s, "users", "by_email", &["email"], false, false)
        .await
        .unwrap();
}

// ---- scans ------------------------------------------------------------------------

#[tokio::test]
async fn index_scans_match_a_brute_force_filter() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let pool = [
        json!(null),
        json!(false),
        json!(true),
        json!(-3),
        json!(0),
        json!(1),
        json!(1.5),
        json!(2),
        json!(10),
        json!(""),
        json!("a"),
        json!("ab"),
        json!("b"),
        json!([1]),
        json!({"x": 1}),
    ];
    let mut docs = Vec::new();
    for i in 0..400usize {
        let mut d = serde_json::Map::new();
        d.insert("_key".into(), json!(format!("d{i:03}")));
        // Leave some attributes out.
        if i % 11 != 0 {
            d.insert("a".into(), pool[(i * 7) % pool.len()].clone());
        }
        d.insert("b".into(), pool[(i * 13 + 5) % pool.len()].clone());
        docs.push(Value::Object(d));
    }
    insert(&s, "c", docs.clone()).await.unwrap();
    let single = index(&s, "c", "a", &["a"], false, false).await.unwrap();
    let compound = index(&s, "c", "ab", &["a", "b"], false, false)
        .await
        .unwrap();
    let snap = s.snapshot().unwrap();
    let c = snap.collection(DB, "c").unwrap();

    // Expected: filter, then sort by (a, b, _key); compare keys.
    let expect = |filter: &dyn Fn(&Value) -> bool, by_b: bool, reverse: bool| -> Vec<String> {
        let mut hits: Vec<&Value> = docs.iter().filter(|d| filter(d)).collect();
        hits.sort_by(|x, y| {
            let o = aql_cmp(&field_of(x, "a"), &field_of(y, "a"));
            let o = if by_b {
                o.then_with(|| aql_cmp(&field_of(x, "b"), &field_of(y, "b")))
            } else {
                o
            };
            o.then_with(|| {
                field_of(x, "_key")
                    .as_str()
                    .cmp(&field_of(y, "_key").as_str())
            })
        });
        let mut keys: Vec<String> = hits
            .into_iter()
            .map(|d| d["_key"].as_str().unwrap().to_string())
            .collect();
        if reverse {
            keys.reverse();
        }
        keys
    };
    let bounds: Vec<Option<(Value, bool)>> = std::iter::once(None)
        .chain(
            pool.iter()
                .flat_map(|v| [Some((v.clone(), true)), Some((v.clone(), false))]),
        )
        .collect();
    let within = |v: &Value, lower: &Option<(Value, bool)>, upper: &Option<(Value, bool)>| {
        let lo = match lower {
            None => true,
            Some((l, incl)) => {
                let o = aql_cmp(v, l);
                o.is_gt() || (*incl && o.is_eq())
            }
        };
        let hi = match upper {
            None => true,
            Some((u, incl)) => {
                let o = aql_cmp(v, u);
                o.is_lt() || (*incl && o.is_eq())
            }
        };
        lo && hi
    };
    let mut checked = 0;
    for (li, lower) in bounds.iter().enumerate() {
        for upper in bounds.iter().skip(li % 3).step_by(3) {
            for reverse in [false, true] {
                let range = IndexRange {
                    eq: vec![],
                    lower: lower.clone(),
                    upper: upper.clone(),
                };
                let got = scan_keys(&snap, &c, &single, range, reverse);
                let want = expect(&|d| within(&field_of(d, "a"), lower, upper), false, reverse);
                assert_eq!(got, want, "range {lower:?}..{upper:?} reverse {reverse}");
                checked += 1;
            }
        }
    }
    assert!(checked > 100);
    // Compound: equality on a, range on b; equality on both.
    for a in &pool {
        for (lower, upper) in [
            (None, None),
            (Some((json!(0), true)), Some((json!("b"), false))),
            (Some((json!(true), false)), None),
            (None, Some((json!(1.5), true))),
        ] {
            for reverse in [false, true] {
                let range = IndexRange {
                    eq: vec![a.clone()],
                    lower: lower.clone(),
                    upper: upper.clone(),
                };
                let got = scan_keys(&snap, &c, &compound, range, reverse);
                let want = expect(
                    &|d| {
                        aql_cmp(&field_of(d, "a"), a).is_eq()
                            && within(&field_of(d, "b"), &lower, &upper)
                    },
                    true,
                    reverse,
                );
                assert_eq!(got, want, "a == {a}, b in {lower:?}..{upper:?}");
            }
        }
        for b in &pool {
            let got = scan_keys(
                &snap,
                &c,
                &compound,
                IndexRange::eq(vec![a.clone(), b.clone()]),
                false,
            );
            let want = expect(
                &|d| aql_cmp(&field_of(d, "a"), a).is_eq() && aql_cmp(&field_of(d, "b"), b).is_eq(),
                true,
                false,
            );
            assert_eq!(got, want, "a == {a}, b == {b}");
        }
    }
    // A range that does not fit the index is an error item.
    let bad = IndexRange {
        eq: vec![json!(1), json!(2)],
        lower: Some((json!(1), true)),
        upper: None,
    };
    let items: Vec<_> = snap.index_scan(&c, &compound, bad, false).collect();
    assert!(matches!(
        items.as_slice(),
        [Err(StorageError::InvalidArgument(_))]
    ));
    // Crossed bounds are empty, not a panic.
    let crossed = IndexRange {
        eq: vec![],
        lower: Some((json!(5), true)),
        upper: Some((json!(1), true)),
    };
    assert!(scan_keys(&snap, &c, &single, crossed, false).is_empty());
}

#[tokio::test]
async fn snapshot_reads_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    insert(
        &s,
        "c",
        (0..10)
            .map(|i| json!({"_key": format!("k{i}"), "n": i}))
            .collect(),
    )
    .await
    .unwrap();
    let idx = index(&s, "c", "n", &["n"], false, false).await.unwrap();
    let snap = s.snapshot().unwrap();
    let c = snap.collection(DB, "c").unwrap();
    let mut scan = snap.index_scan(&c, &idx, IndexRange::all(), false);
    let first = parse(&scan.next().unwrap().unwrap());
    assert_eq!(first["n"], json!(0));
    // Writes after the snapshot are invisible to it, even mid-scan.
    s.delete(DB, "c", &fields(&["k5"]), None)
        .wait()
        .await
        .unwrap();
    insert(&s, "c", vec![json!({"_key": "new", "n": 3})])
        .await
        .unwrap();
    assert_eq!(scan.count(), 9);
    assert_eq!(snap.scan(&c).count(), 10);
    assert!(snap.get(&c, "k5").unwrap().is_some());
    assert!(snap.get(&c, "new").unwrap().is_none());
    assert!(snap.get(&c, "not/a key").unwrap().is_none());
    assert_eq!(snap.indexes(&c).unwrap(), vec![idx.clone()]);
    let keys: Vec<String> = snap
        .scan(&c)
        .map(|d| parse(&d.unwrap())["_key"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    match snap.collection(DB, "nope") {
        Err(StorageError::NotFound(m)) => assert!(m.contains("'nope'"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The scan's iterator can outlive nothing but itself: it works after a move.
    let fresh = s.snapshot().unwrap();
    let it = fresh.index_scan(&c, &idx, IndexRange::eq(vec![json!(3)]), false);
    let n = std::thread::spawn(move || it.count()).join().unwrap();
    assert_eq!(n, 2);
}

// ---- query transactions -------------------------------------------------------------

#[tokio::test]
async fn write_transactions_maintain_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_collection(DB, "users").wait().await.unwrap();
    let by_email = index(&s, "users", "by_email", &["email"], true, false)
        .await
        .unwrap();
    insert(&s, "users", vec![json!({"_key": "old", "email": "o@x"})])
        .await
        .unwrap();

    let mut tx = s.begin_write().unwrap();
    let c = tx.collection(DB, "users", false).unwrap();
    let new = tx
        .insert(&c, json!({"_key": "a", "email": "a@x", "_rev": "ignored"}))
        .unwrap();
    assert_eq!(new["_id"], json!("users/a"));
    assert_ne!(new["_rev"], json!("ignored"));
    // Own writes are visible, to get and to index scans.
    assert_eq!(tx.get(&c, "a").unwrap().unwrap(), new);
    let keys: Vec<String> = tx
        .index_keys(&c, &by_email, IndexRange::eq(vec![json!("a@x")]), false)
        .map(Result::unwrap)
        .collect();
    assert_eq!(keys, vec!["a"]);
    // A unique violation fails the operation only; the transaction goes on.
    let m = conflict_message(tx.insert(&c, json!({"email": "a@x"})));
    assert!(m.contains("(_key 'a')"), "{m}");
    let m =
        conflict_message(tx.update(&c, "old", json!({"email": "a@x"}), UpdateMode::Merge, false));
    assert!(m.contains("by_email"), "{m}");
    let (before, after) = tx
        .update(
            &c,
            "old",
            json!({"email": null, "x": 1}),
            UpdateMode::Merge,
            true,
        )
        .unwrap();
    assert_eq!(before["email"], json!("o@x"));
    assert_eq!(after["email"], Value::Null);
    assert_eq!(after["x"], json!(1));
    let removed = tx.remove(&c, "a").unwrap();
    assert_eq!(removed["email"], json!("a@x"));
    assert!(matches!(tx.remove(&c, "a"), Err(StorageError::NotFound(_))));
    // Freed by the remove, in the same transaction.
    tx.insert(&c, json!({"_key": "b", "email": "a@x"})).unwrap();
    let auto = tx.collection(DB, "fresh", true).unwrap();
    tx.insert(&auto, json!({"_key": "f"})).unwrap();
    // Nothing is visible outside before the commit.
    assert!(s.get(DB, "users", &fields(&["b"])).unwrap()[0].is_none());
    tx.commit().unwrap().wait().await.unwrap();

    let snap = s.snapshot().unwrap();
    let c = snap.collection(DB, "users").unwrap();
    assert_eq!(
        scan_keys(&snap, &c, &by_email, IndexRange::all(), false),
        vec!["old", "b"]
    );
    assert!(s.get(DB, "users", &fields(&["a"])).unwrap()[0].is_none());
    assert!(s.get(DB, "fresh", &fields(&["f"])).unwrap()[0].is_some());

    // A dropped transaction leaves nothing.
    let mut tx = s.begin_write().unwrap();
    let c = tx.collection(DB, "users", false).unwrap();
    tx.insert(&c, json!({"_key": "gone", "email": "g@x"}))
        .unwrap();
    drop(tx);
    assert!(s.get(DB, "users", &fields(&["gone"])).unwrap()[0].is_none());
    let mut tx = s.begin_write().unwrap();
    assert!(matches!(
        tx.collection(DB, "nope", false),
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn conflicting_write_transactions_are_contended() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.create_collection(DB, "c").wait().await.unwrap();
    index(&s, "c", "u", &["u"], true, false).await.unwrap();
    let mut t1 = s.begin_write().unwrap();
    let mut t2 = s.begin_write().unwrap();
    let c1 = t1.collection(DB, "c", false).unwrap();
    let c2 = t2.collection(DB, "c", false).unwrap();
    t1.insert(&c1, json!({"u": 1})).unwrap();
    t2.insert(&c2, json!({"u": 1})).unwrap();
    t1.commit().unwrap().wait().await.unwrap();
    assert!(matches!(t2.commit(), Err(StorageError::Contended(_))));
    // An index created while a transaction runs makes that transaction conflict.
    let mut t3 = s.begin_write().unwrap();
    let c3 = t3.collection(DB, "c", false).unwrap();
    t3.insert(&c3, json!({"v": 1})).unwrap();
    index(&s, "c", "v", &["v"], false, false).await.unwrap();
    assert!(matches!(t3.commit(), Err(StorageError::Contended(_))));
}

// ---- durability and concurrency ---------------------------------------------------

#[tokio::test]
async fn indexes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let listed;
    {
        let s = open(&dir);
        insert(
            &s,
            "c",
            vec![json!({"_key": "a", "e": 1}), json!({"_key": "b", "e": 2})],
        )
        .await
        .unwrap();
        index(&s, "c", "e", &["e"], true, false).await.unwrap();
        index(&s, "c", "gone", &["x"], false, false).await.unwrap();
        s.drop_index(DB, "c", "gone").wait().await.unwrap();
        listed = s.list_indexes(DB, "c").unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.list_indexes(DB, "c").unwrap(), listed);
    let m = conflict_message(insert(&s, "c", vec![json!({"e": 2})]).await);
    assert!(m.contains("(_key 'b')"), "{m}");
    let snap = s.snapshot().unwrap();
    let c = snap.collection(DB, "c").unwrap();
    assert_eq!(
        scan_keys(&snap, &c, &listed[0], IndexRange::all(), true),
        vec!["b", "a"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inserts_never_duplicate_a_unique_value() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    s.create_collection(DB, "c").wait().await.unwrap();
    let idx = index(&s, "c", "u", &["u"], true, false).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for i in 0..20u64 {
                let u = (t * 7 + i * 13) % 50;
                let key = format!("t{t}-{i}");
                let r = s
                    .insert(DB, "c", vec![doc(json!({"_key": key, "u": u}))], false)
                    .wait()
                    .await;
                match r {
                    Ok(_) => won.push((key, u)),
                    Err(StorageError::Conflict(m)) => {
                        assert!(m.contains("index 'u'"), "{m}")
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            won
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    let values: HashSet<u64> = won.iter().map(|(_, u)| *u).collect();
    assert_eq!(
        values.len(),
        won.len(),
        "a value was inserted twice: {won:?}"
    );
    assert_eq!(values.len(), 50, "every value was taken by someone");
    let stats = s.collection_stats(DB, "c").unwrap();
    assert_eq!(stats.count, won.len() as u64);
    let snap = s.snapshot().unwrap();
    let c = snap.collection(DB, "c").unwrap();
    let by_index: HashMap<String, u64> = snap
        .index_scan(&c, &idx, IndexRange::all(), false)
        .map(|d| {
            let d = parse(&d.unwrap());
            (
                d["_key"].as_str().unwrap().to_string(),
                d["u"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: HashMap<String, u64> = won.into_iter().collect();
    assert_eq!(by_index, expected);
}
