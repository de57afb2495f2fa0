//! The executor on real storage in a temp dir: reads, writes, COLLECT, subqueries,
//! index use, errors.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use themis_aql::{explain, run_read, run_write, Prepared, QueryOptions};
use themis_storage::{DocumentStore, StoreOptions, WaitDurable};

fn store() -> (tempfile::TempDir, DocumentStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = DocumentStore::open(StoreOptions::new(dir.path())).unwrap();
    (dir, s)
}

fn read(s: &DocumentStore, q: &str, binds: Value) -> Result<Vec<Value>, String> {
    let binds: BTreeMap<String, Value> = serde_json::from_value(binds).unwrap();
    let p = Prepared::new(q, binds).map_err(|e| e.to_string())?;
    if p.is_write() {
        let (rows, _, pending) =
            run_write(s, "_system", &p, &QueryOptions::default()).map_err(|e| e.to_string())?;
        futures::executor::block_on(pending.wait()).unwrap();
        return Ok(rows);
    }
    let mut c = run_read(s, "_system", &p, &QueryOptions::default()).map_err(|e| e.to_string())?;
    c.next_batch(usize::MAX).map_err(|e| e.to_string())
}

fn q(s: &DocumentStore, text: &str) -> Vec<Value> {
    read(s, text, json!({})).unwrap_or_else(|e| panic!("{text}: {e}"))
}

const CITIES: [&str; 3] = ["berlin", "paris", "rome"];

fn seed(s: &DocumentStore) {
    let docs: Vec<bytes::Bytes> = (0..20)
        .map(|i| {
            serde_json::to_vec(&json!({"_key": format!("u{i}"), "name": format!("user{i}"), "age": 20 + i, "city": CITIES[i % 3], "tags": [i % 2, i % 5]}))
                .unwrap()
                .into()
        })
        .collect();
    futures::executor::block_on(s.insert("_system", "users", docs, true).wait()).unwrap();
}

#[test]
fn reads_filters_sorts_limits() {
    let (_d, s) = store();
    seed(&s);
    assert_eq!(q(&s, "RETURN 1 + 1"), vec![json!(2)]);
    assert_eq!(
        q(&s, "FOR i IN 1..3 RETURN i * 2"),
        vec![json!(2), json!(4), json!(6)]
    );
    assert_eq!(
        q(
            &s,
            "FOR u IN users FILTER u.age > 36 SORT u.age DESC RETURN u.name"
        ),
        vec![json!("user19"), json!("user18"), json!("user17")]
    );
    assert_eq!(
        q(&s, "FOR u IN users SORT u.age LIMIT 2, 2 RETURN u._key"),
        vec![json!("u2"), json!("u3")]
    );
    assert_eq!(
        q(&s, "FOR u IN users FILTER u._key == 'u7' RETURN u.age"),
        vec![json!(27)]
    );
    assert_eq!(
        q(
            &s,
            "RETURN LENGTH(FOR u IN users FILTER u.city == 'rome' RETURN 1)"
        ),
        vec![json!(6)]
    );
    assert_eq!(
        q(
            &s,
            "FOR u IN users COLLECT city = u.city WITH COUNT INTO n RETURN {city, n}"
        ),
        vec![
            json!({"city": "berlin", "n": 7}),
            json!({"city": "paris", "n": 7}),
            json!({"city": "rome", "n": 6})
        ]
    );
    assert_eq!(
        q(&s, "FOR u IN users COLLECT city = u.city AGGREGATE total = SUM(u.age), oldest = MAX(u.age) SORT total DESC LIMIT 1 RETURN [city, total, oldest]"),
        // paris: ages 21, 24, …, 39 (7 users).
        vec![json!(["paris", 210, 39])]
    );
    assert_eq!(
        q(&s, "FOR u IN users COLLECT WITH COUNT INTO n RETURN n"),
        vec![json!(20)]
    );
    assert_eq!(q(&s, "FOR u IN users FILTER u.age < 22 COLLECT c = u.city INTO g RETURN {c, names: g[*].u.name}"),
        vec![json!({"c": "berlin", "names": ["user0"]}), json!({"c": "paris", "names": ["user1"]})]);
    assert_eq!(
        q(
            &s,
            "FOR u IN users FILTER u.age < 23 RETURN DISTINCT u.tags[0]"
        ),
        vec![json!(0), json!(1)]
    );
    assert_eq!(
        q(&s, "LET xs = [3,1,2] FOR x IN xs SORT x RETURN x"),
        vec![json!(1), json!(2), json!(3)]
    );
    assert_eq!(
        q(
            &s,
            "FOR a IN [1,2] FOR b IN [10,20] FILTER b > a * 10 RETURN a + b"
        ),
        vec![json!(21)]
    );
    assert_eq!(q(&s, "RETURN [1,[2,[3]]][**]"), vec![json!([1, 2, [3]])]);
    assert_eq!(
        q(
            &s,
            "RETURN [{a:1},{a:2},{a:3}][* FILTER CURRENT.a > 1 RETURN CURRENT.a * 10]"
        ),
        vec![json!([20, 30])]
    );
    assert_eq!(
        q(&s, "RETURN DOCUMENT('users/u3').name"),
        vec![json!("user3")]
    );
    assert_eq!(
        q(&s, "RETURN DOCUMENT('users', ['u1','nope','u2'])[*]._key"),
        vec![json!(["u1", "u2"])]
    );
    assert_eq!(q(&s, "RETURN null ?: 'x'"), vec![json!("x")]);
    assert_eq!(
        read(
            &s,
            "FOR u IN users FILTER u.age == @a RETURN u._key",
            json!({"a": 25})
        )
        .unwrap(),
        vec![json!("u5")]
    );
    assert_eq!(
        read(
            &s,
            "FOR u IN @@c FILTER u.age == 21 RETURN u._key",
            json!({"@c": "users"})
        )
        .unwrap(),
        vec![json!("u1")]
    );
}

#[test]
fn errors_name_the_problem() {
    let (_d, s) = store();
    seed(&s);
    let e = read(&s, "FOR u IN nope RETURN u", json!({})).unwrap_err();
    assert!(e.contains("nope"), "{e}");
    let e = read(&s, "RETURN FOO(1)", json!({})).unwrap_err();
    assert!(e.contains("FOO"), "{e}");
    let e = read(&s, "RETURN @x", json!({})).unwrap_err();
    assert!(e.contains("x") && e.contains("bind"), "{e}");
    let e = read(&s, "RETURN 1", json!({"unused": 1})).unwrap_err();
    assert!(e.contains("unused"), "{e}");
    let e = read(&s, "FOR u IN users\nFILTER u.age >>> 3 RETURN u", json!({})).unwrap_err();
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn writes_are_atomic_and_return_old_new() {
    let (_d, s) = store();
    seed(&s);
    assert_eq!(
        q(&s, "INSERT {_key: 'n1', v: 1} INTO users RETURN NEW.v"),
        vec![json!(1)]
    );
    assert_eq!(
        q(
            &s,
            "UPDATE 'n1' WITH {v: 2, w: null} IN users RETURN [OLD.v, NEW.v, HAS(NEW, 'w')]"
        ),
        vec![json!([1, 2, true])]
    );
    assert_eq!(
        q(
            &s,
            "REPLACE {_key: 'n1', z: 3} IN users RETURN [NEW.z, HAS(NEW, 'v')]"
        ),
        vec![json!([3, false])]
    );
    assert_eq!(
        q(
            &s,
            "FOR u IN users FILTER u.age >= 38 UPDATE u WITH {old: true} IN users RETURN NEW._key"
        ),
        vec![json!("u18"), json!("u19")]
    );
    assert_eq!(q(&s, "REMOVE 'n1' IN users RETURN OLD.z"), vec![json!(3)]);
    assert_eq!(q(&s, "UPSERT {_key: 'x1'} INSERT {_key: 'x1', n: 1} UPDATE {n: OLD.n + 1} IN users RETURN NEW.n"), vec![json!(1)]);
    assert_eq!(q(&s, "UPSERT {_key: 'x1'} INSERT {_key: 'x1', n: 1} UPDATE {n: OLD.n + 1} IN users RETURN NEW.n"), vec![json!(2)]);
    // A failing write leaves nothing behind: the duplicate key aborts the whole query.
    let e = read(
        &s,
        "FOR i IN 1..3 INSERT {_key: i == 3 ? 'u1' : CONCAT('t', i)} INTO users",
        json!({}),
    )
    .unwrap_err();
    assert!(e.contains("u1"), "{e}");
    assert_eq!(
        q(
            &s,
            "FOR u IN users FILTER STARTS_WITH(u._key, 't') RETURN u"
        ),
        Vec::<Value>::new()
    );
}

#[test]
fn explain_names_indexes() {
    let (_d, s) = store();
    seed(&s);
    futures::executor::block_on(
        s.create_index(
            "_system",
            "users",
            "by_age",
            vec!["age".into()],
            false,
            false,
        )
        .wait(),
    )
    .unwrap();
    let plan = |text: &str| {
        explain(
            &s,
            "_system",
            &Prepared::new(text, BTreeMap::new()).unwrap(),
        )
        .unwrap()
    };
    assert!(plan("FOR u IN users FILTER u.age == 30 RETURN u").contains("by_age"));
    assert!(plan("FOR u IN users FILTER u.age > 30 AND u.age < 35 RETURN u").contains("by_age"));
    assert!(plan("FOR u IN users FILTER u.age IN [21, 22] RETURN u").contains("by_age"));
    assert!(plan("FOR u IN users SORT u.age DESC LIMIT 3 RETURN u").contains("by_age"));
    assert!(plan("FOR u IN users FILTER u._key == 'u1' RETURN u").contains("primary"));
    assert!(plan("FOR u IN users FILTER u.name == 'x' RETURN u").contains("full collection scan"));
    assert_eq!(
        q(
            &s,
            "FOR u IN users FILTER u.age > 30 AND u.age < 33 RETURN u._key"
        ),
        vec![json!("u11"), json!("u12")]
    );
    assert_eq!(
        q(
            &s,
            "FOR u IN users FILTER u.age IN [22, 21, 22] RETURN u._key"
        ),
        vec![json!("u1"), json!("u2")]
    );
    assert_eq!(
        q(&s, "FOR u IN users SORT u.age DESC LIMIT 2 RETURN u._key"),
        vec![json!("u19"), json!("u18")]
    );
    let p = Prepared::new(
        "FOR u IN users FILTER u.age == 30 RETURN u",
        BTreeMap::new(),
    )
    .unwrap();
    let mut c = run_read(&s, "_system", &p, &QueryOptions::default()).unwrap();
    c.next_batch(100).unwrap();
    assert_eq!(c.stats().documents_scanned, 1);
}

#[test]
fn context_functions() {
    let (_d, s) = store();
    seed(&s);
    assert_eq!(q(&s, "RETURN CURRENT_DATABASE()"), vec![json!("_system")]);
    assert_eq!(q(&s, "RETURN COLLECTION_COUNT('users')"), vec![json!(20)]);
    assert_eq!(
        q(&s, "RETURN COLLECTIONS()[*].name"),
        vec![json!(["users"])]
    );
    assert_eq!(q(&s, "RETURN LENGTH(users)"), vec![json!(20)]);
}

#[test]
fn filters_on_variables_declared_after_the_for() {
    let (_d, s) = store();
    seed(&s);
    futures::executor::block_on(
        s.create_index(
            "_system",
            "users",
            "by_age",
            vec!["age".into()],
            false,
            false,
        )
        .wait(),
    )
    .unwrap();
    assert_eq!(
        q(
            &s,
            "FOR u IN users LET x = 25 FILTER u.age == x RETURN u._key"
        ),
        vec![json!("u5")]
    );
    assert_eq!(
        q(
            &s,
            "FOR u IN users LET k = 'u6' FILTER u._key == k RETURN u.age"
        ),
        vec![json!(26)]
    );
    // A condition on a variable of an outer loop can use the index per outer row.
    assert_eq!(
        q(
            &s,
            "FOR a IN [21, 22] FOR u IN users FILTER u.age == a RETURN u._key"
        ),
        vec![json!("u1"), json!("u2")]
    );
}

fn plan_of(s: &DocumentStore, text: &str) -> String {
    explain(s, "_system", &Prepared::new(text, BTreeMap::new()).unwrap()).unwrap()
}

#[test]
fn sparse_compound_index_never_drops_rows() {
    let (_d, s) = store();
    q(&s, "FOR d IN [{_key:'a',a:1,b:1},{_key:'b',a:1},{_key:'c',a:1,b:null},{_key:'d',a:2,b:5}] INSERT d INTO sp");
    futures::executor::block_on(
        s.create_index(
            "_system",
            "sp",
            "ab",
            vec!["a".into(), "b".into()],
            false,
            true,
        )
        .wait(),
    )
    .unwrap();
    // The sparse index lacks b and c (b missing or null): it may not serve these.
    assert_eq!(
        q(&s, "FOR d IN sp FILTER d.a == 1 SORT d._key RETURN d._key"),
        vec![json!("a"), json!("b"), json!("c")]
    );
    assert_eq!(
        q(
            &s,
            "FOR d IN sp FILTER d.a == 1 AND d.b < 5 SORT d._key RETURN d._key"
        ),
        vec![json!("a"), json!("b"), json!("c")]
    );
    assert!(!plan_of(&s, "FOR d IN sp FILTER d.a == 1 RETURN d").contains("'ab'"));
    // Non-null constants on every field exclude null: the index may serve.
    assert_eq!(
        q(&s, "FOR d IN sp FILTER d.a == 1 AND d.b == 1 RETURN d._key"),
        vec![json!("a")]
    );
    assert!(plan_of(&s, "FOR d IN sp FILTER d.a == 1 AND d.b == 1 RETURN d").contains("'ab'"));
}

#[test]
fn negative_constants_are_constants_for_the_planner() {
    let (_d, s) = store();
    q(&s, "FOR i IN -3..3 INSERT {x: i} INTO neg");
    futures::executor::block_on(
        s.create_index("_system", "neg", "by_x", vec!["x".into()], false, true)
            .wait(),
    )
    .unwrap();
    assert!(plan_of(&s, "FOR d IN neg FILTER d.x == -2 RETURN d").contains("by_x"));
    assert_eq!(
        q(&s, "FOR d IN neg FILTER d.x == -2 RETURN d.x"),
        vec![json!(-2)]
    );
}

#[test]
fn streaming_query_is_stopped_by_the_time_limit() {
    let (_d, s) = store();
    let opts = QueryOptions {
        max_runtime: Some(std::time::Duration::from_millis(200)),
        ..QueryOptions::default()
    };
    let p = Prepared::new(
        "FOR a IN 1..5000 FOR b IN 1..5000 RETURN a * b",
        BTreeMap::new(),
    )
    .unwrap();
    let mut c = run_read(&s, "_system", &p, &opts).unwrap();
    let started = std::time::Instant::now();
    let err = loop {
        match c.next_batch(1000) {
            Ok(batch) if batch.is_empty() => panic!("25M rows finished within the time limit"),
            Ok(_) => assert!(started.elapsed() < std::time::Duration::from_secs(60)),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("time limit"), "{err}");
    assert!(
        err.to_string().contains("200ms"),
        "limits under a second are shown exactly: {err}"
    );
}

#[test]
fn rows_returned_counts_delivered_rows_only() {
    let (_d, s) = store();
    let p = Prepared::new("FOR i IN 1..10 RETURN i", BTreeMap::new()).unwrap();
    let mut c = run_read(&s, "_system", &p, &QueryOptions::default()).unwrap();
    assert_eq!(c.next_batch(4).unwrap().len(), 4);
    assert!(c.has_more().unwrap());
    assert_eq!(c.stats().rows_returned, 4);
}

#[test]
fn explain_names_modification_operations_plainly() {
    let (_d, s) = store();
    seed(&s);
    let plan = plan_of(
        &s,
        "UPSERT {_key: 'z'} INSERT {_key: 'z'} UPDATE {n: 1} IN users",
    );
    assert!(plan.contains("UPSERT") && plan.contains("users"), "{plan}");
    assert!(!plan.contains('{'), "no debug formatting: {plan}");
}
