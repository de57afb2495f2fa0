//! The AQL acceptance suite: a table of queries with the results ArangoDB documents
//! for them, run against a real server on loopback (real storage in a temp dir)
//! through `OP_QUERY` / `OP_CURSOR_NEXT`.
//!
//! * One dataset (`tests/aql/dataset.json`: `users`, `orders` referencing users,
//!   `products`, and `mixed`, one document per AQL type) is seeded once.
//! * Read cases run twice: first on plain collections (full scans), then again
//!   after secondary indexes exist (`users.age`, sparse `users.city`,
//!   `orders.status`, `orders.user`), so every planner choice is checked against
//!   the same expected results. EXPLAIN cases run in the indexed pass only.
//! * Write cases run afterwards, one after another, each in its own collection.
//! * Every query is sent with a small batch size, so results longer than a batch
//!   come back through cursors.
//! * Every failing case is reported (query, expected, actual) before the test
//!   fails. Cases in [`KNOWN_FAILING`] are engine bugs reported but not fixed
//!   yet: the test asserts they still fail, so it goes red when one is fixed and
//!   the list must be updated.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;

use common::TestServer;
use serde_json::{json, Value};
use themis_client::{wire, Client, ErrorCode, IndexOptions, OpCode};

/// The seeded data.
const DATASET: &str = include_str!("aql/dataset.json");

/// Results per batch: small, so that cursors are followed.
const BATCH: i32 = 7;

/// Cases that fail because of engine bugs not fixed yet: `(case name, bug)`.
/// The suite asserts that each of them still fails; when one passes, remove it.
const KNOWN_FAILING: &[(&str, &str)] = &[];

// ---- the table ------------------------------------------------------------------

/// What a case expects.
enum Expect {
    /// Exactly these results, in this order.
    Rows(Value),
    /// These results, in any order (for queries whose order AQL leaves open).
    AnyOrder(Value),
    /// A check on the results (for non-deterministic functions).
    Check(fn(&[Value]) -> Result<(), String>),
    /// Failure with this code and every fragment in the message.
    Error(ErrorCode, &'static [&'static str]),
    /// EXPLAIN: the plan text contains every fragment.
    Plan(&'static [&'static str]),
}

struct Case {
    name: String,
    /// Runs in the indexed pass only (EXPLAIN cases).
    indexed_only: bool,
    /// Queries run first, each of which must succeed (write cases).
    setup: Vec<&'static str>,
    query: &'static str,
    binds: Value,
    expect: Expect,
    /// A query run afterwards and its expected results (writes and atomicity).
    after: Option<(&'static str, Value)>,
}

#[derive(Default)]
struct Table {
    group: &'static str,
    cases: Vec<Case>,
}

impl Table {
    fn group(&mut self, group: &'static str) {
        self.group = group;
    }

    fn push(&mut self, name: &str, query: &'static str, binds: Value, expect: Expect) -> &mut Case {
        self.cases.push(Case {
            name: format!("{}: {name}", self.group),
            indexed_only: false,
            setup: Vec::new(),
            query,
            binds,
            expect,
            after: None,
        });
        self.cases.last_mut().expect("just pushed")
    }

    /// Results in this order.
    fn rows(&mut self, name: &str, query: &'static str, expected: Value) {
        self.push(name, query, json!({}), Expect::Rows(expected));
    }

    /// Results in this order, with bind parameters.
    fn rows_b(&mut self, name: &str, query: &'static str, binds: Value, expected: Value) {
        self.push(name, query, binds, Expect::Rows(expected));
    }

    /// Results in any order.
    fn any_order(&mut self, name: &str, query: &'static str, expected: Value) {
        self.push(name, query, json!({}), Expect::AnyOrder(expected));
    }

    /// A query with one result: `value`.
    fn one(&mut self, name: &str, query: &'static str, value: Value) {
        self.push(name, query, json!({}), Expect::Rows(json!([value])));
    }

    fn check(&mut self, name: &str, query: &'static str, f: fn(&[Value]) -> Result<(), String>) {
        self.push(name, query, json!({}), Expect::Check(f));
    }

    fn error(
        &mut self,
        name: &str,
        query: &'static str,
        code: ErrorCode,
        fragments: &'static [&'static str],
    ) {
        self.push(name, query, json!({}), Expect::Error(code, fragments));
    }

    fn error_b(
        &mut self,
        name: &str,
        query: &'static str,
        binds: Value,
        code: ErrorCode,
        fragments: &'static [&'static str],
    ) {
        self.push(name, query, binds, Expect::Error(code, fragments));
    }

    fn plan(&mut self, name: &str, query: &'static str, fragments: &'static [&'static str]) {
        self.push(name, query, json!({}), Expect::Plan(fragments))
            .indexed_only = true;
    }

    /// A write case: `setup` queries, then `query` with `expect`, then `after`
    /// (a query and its expected results).
    fn write(
        &mut self,
        name: &str,
        setup: &[&'static str],
        query: &'static str,
        binds: Value,
        expect: Expect,
        after: Option<(&'static str, Value)>,
    ) {
        let case = self.push(name, query, binds, expect);
        case.setup = setup.to_vec();
        case.after = after;
    }
}

// ---- talking to the server ---------------------------------------------------------

/// The answer to one query, all batches collected.
enum Outcome {
    Ok {
        rows: Vec<Value>,
        plan: String,
    },
    Failed {
        code: Option<ErrorCode>,
        message: String,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok { rows, plan } if plan.is_empty() => {
                write!(f, "{}", Value::Array(rows.clone()))
            }
            Outcome::Ok { plan, .. } => write!(f, "plan:\n{plan}"),
            Outcome::Failed { code, message } => write!(f, "error {code:?}: {message}"),
        }
    }
}

fn failed(code: Option<ErrorCode>, message: impl Into<String>) -> Outcome {
    Outcome::Failed {
        code,
        message: message.into(),
    }
}

fn response_error(resp: &wire::QueryResponse) -> Outcome {
    match &resp.error {
        Some(e) => failed(ErrorCode::try_from(e.code).ok(), e.message.clone()),
        None => failed(None, format!("success=false without error: {resp:?}")),
    }
}

async fn run_query(client: &Client, query: &str, binds: &Value, explain: bool) -> Outcome {
    let mut bind_vars = HashMap::new();
    if let Value::Object(m) = binds {
        for (k, v) in m {
            bind_vars.insert(
                k.clone(),
                serde_json::to_vec(v).expect("bind value encodes").into(),
            );
        }
    }
    let req = wire::QueryRequest {
        aql_query: query.to_string(),
        bind_vars,
        batch_size: BATCH,
        explain,
        ..Default::default()
    };
    let mut resp: wire::QueryResponse = match client.raw_request(OpCode::OpQuery, &req).await {
        Ok(r) => r,
        Err(e) => return failed(e.code(), e.to_string()),
    };
    if !resp.success {
        return response_error(&resp);
    }
    let plan = resp
        .stats
        .as_ref()
        .map(|s| s.plan.clone())
        .unwrap_or_default();
    let mut rows = Vec::new();
    loop {
        for raw in &resp.results {
            match serde_json::from_slice(raw) {
                Ok(v) => rows.push(v),
                Err(e) => return failed(None, format!("a result is not JSON: {e}")),
            }
        }
        if !resp.has_more {
            break;
        }
        if resp.results.len() > BATCH as usize {
            return failed(
                None,
                format!(
                    "a batch of {} results, more than batch_size {BATCH}",
                    resp.results.len()
                ),
            );
        }
        let next = wire::CursorNextRequest {
            cursor_id: resp.cursor_id.clone(),
            batch_size: BATCH,
            ..Default::default()
        };
        resp = match client.raw_request(OpCode::OpCursorNext, &next).await {
            Ok(r) => r,
            Err(e) => return failed(e.code(), format!("CURSOR_NEXT: {e}")),
        };
        if !resp.success {
            return response_error(&resp);
        }
    }
    Outcome::Ok { rows, plan }
}

// ---- comparing ---------------------------------------------------------------------

/// JSON equality where numbers compare by value (`2 == 2.0`, tiny float noise
/// allowed) and object attribute order does not matter.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn same_any_order(expected: &[Value], actual: &[Value]) -> bool {
    if expected.len() != actual.len() {
        return false;
    }
    let mut used = vec![false; actual.len()];
    expected.iter().all(
        |e| match (0..actual.len()).find(|&i| !used[i] && same(e, &actual[i])) {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        },
    )
}

/// `None` when the outcome is what the case expects, else why not.
fn judge(expect: &Expect, outcome: &Outcome) -> Option<String> {
    match (expect, outcome) {
        (Expect::Rows(v), Outcome::Ok { rows, .. }) => {
            let want = v.as_array().expect("expected rows are an array");
            (!(want.len() == rows.len() && want.iter().zip(rows).all(|(a, b)| same(a, b))))
                .then(|| format!("expected {v}"))
        }
        (Expect::AnyOrder(v), Outcome::Ok { rows, .. }) => {
            let want = v.as_array().expect("expected rows are an array");
            (!same_any_order(want, rows)).then(|| format!("expected (in any order) {v}"))
        }
        (Expect::Check(f), Outcome::Ok { rows, .. }) => f(rows).err(),
        (Expect::Plan(frags), Outcome::Ok { plan, .. }) => {
            let missing: Vec<_> = frags.iter().filter(|f| !plan.contains(**f)).collect();
            (!missing.is_empty()).then(|| format!("expected the plan to contain {missing:?}"))
        }
        (Expect::Error(code, frags), Outcome::Failed { code: got, message }) => {
            let missing: Vec<_> = frags.iter().filter(|f| !message.contains(**f)).collect();
            (Some(*code) != *got || !missing.is_empty())
                .then(|| format!("expected error {code:?} whose message contains {frags:?}"))
        }
        (Expect::Error(code, frags), Outcome::Ok { .. }) => Some(format!(
            "expected error {code:?} whose message contains {frags:?}"
        )),
        (Expect::Rows(v) | Expect::AnyOrder(v), Outcome::Failed { .. }) => {
            Some(format!("expected {v}"))
        }
        (Expect::Check(_), Outcome::Failed { .. }) => Some("expected success".into()),
        (Expect::Plan(frags), Outcome::Failed { .. }) => {
            Some(format!("expected a plan containing {frags:?}"))
        }
    }
}

/// Runs one case; `None` if it passed, else the report.
async fn run_case(client: &Client, case: &Case) -> Option<String> {
    let mut report = String::new();
    for setup in &case.setup {
        let out = run_query(client, setup, &json!({}), false).await;
        if let Outcome::Failed { .. } = out {
            let _ = write!(report, "\n    setup {setup}\n    failed: {out}");
            return Some(report);
        }
    }
    let explain = matches!(case.expect, Expect::Plan(_));
    let out = run_query(client, case.query, &case.binds, explain).await;
    if let Some(why) = judge(&case.expect, &out) {
        let _ = write!(
            report,
            "\n    query:    {}",
            case.query.replace('\n', "\n              ")
        );
        if case.binds.as_object().is_some_and(|m| !m.is_empty()) {
            let _ = write!(report, "\n    binds:    {}", case.binds);
        }
        let _ = write!(report, "\n    {why}\n    actual:   {out}");
    }
    if let Some((query, want)) = &case.after {
        let out = run_query(client, query, &json!({}), false).await;
        if let Some(why) = judge(&Expect::Rows(want.clone()), &out) {
            let _ = write!(
                report,
                "\n    then:     {query}\n    {why}\n    actual:   {out}"
            );
        }
    }
    (!report.is_empty()).then_some(report)
}

// ---- the test ------------------------------------------------------------------------

async fn seed(client: &Client) {
    let data: Value = serde_json::from_str(DATASET).expect("dataset is JSON");
    for (name, docs) in data.as_object().expect("dataset is an object") {
        let docs = docs.as_array().expect("collection is an array");
        client
            .create_collection(name)
            .await
            .expect("create collection");
        let keys = client
            .collection(name)
            .insert_many(docs)
            .await
            .expect("seed documents");
        assert_eq!(keys.len(), docs.len());
    }
}

async fn create_indexes(client: &Client) {
    let plain = IndexOptions::default();
    let sparse = IndexOptions::default().sparse(true);
    for (coll, name, fields, opts) in [
        ("users", "by_age", &["age"][..], plain),
        ("users", "by_city", &["city"][..], sparse),
        ("users", "by_active_score", &["active", "score"][..], plain),
        ("orders", "by_status", &["status"][..], plain),
        ("orders", "by_user", &["user"][..], plain),
        ("products", "by_price", &["price"][..], plain),
    ] {
        client
            .create_index(coll, name, fields, opts)
            .await
            .unwrap_or_else(|e| panic!("create index {name}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aql_acceptance_suite() {
    let server = TestServer::start().await;
    let client = server.client().await;
    seed(&client).await;

    let reads = read_cases();
    let writes = write_cases();
    let total = reads.iter().filter(|c| !c.indexed_only).count() + writes.len();
    let explains = reads.iter().filter(|c| c.indexed_only).count();

    let mut results: Vec<(String, Option<String>)> = Vec::new();
    for case in reads.iter().filter(|c| !c.indexed_only) {
        let r = run_case(&client, case).await;
        results.push((format!("[scan] {}", case.name), r));
    }
    create_indexes(&client).await;
    for case in &reads {
        let r = run_case(&client, case).await;
        let pass = if case.indexed_only { "" } else { "[indexed] " };
        results.push((format!("{pass}{}", case.name), r));
    }
    for case in &writes {
        let r = run_case(&client, case).await;
        results.push((case.name.clone(), r));
    }

    // Known failures: every pass of a known-failing case must still fail.
    let known = |name: &str| {
        let bare = name
            .trim_start_matches("[scan] ")
            .trim_start_matches("[indexed] ");
        KNOWN_FAILING.iter().find(|(n, _)| *n == bare)
    };
    let mut unexpected = Vec::new();
    let mut fixed = Vec::new();
    let mut known_seen = Vec::new();
    for (name, r) in &results {
        match (r, known(name)) {
            (Some(report), None) => unexpected.push(format!("FAIL {name}{report}")),
            (Some(_), Some((_, why))) => known_seen.push(format!("{name}: {why}")),
            (None, Some(_)) => fixed.push(name.clone()),
            (None, None) => {}
        }
    }
    for (n, _) in KNOWN_FAILING {
        assert!(
            results
                .iter()
                .any(|(name, _)| known(name).is_some_and(|(k, _)| k == n)),
            "KNOWN_FAILING names a case that does not exist: {n}"
        );
    }
    println!(
        "AQL suite: {total} cases ({} read cases run on scans and on indexes, {} write cases, {explains} EXPLAIN cases); {} runs, {} unexpected failures, {} known failures",
        reads.len() - explains,
        writes.len(),
        results.len(),
        unexpected.len(),
        known_seen.len()
    );
    for k in &known_seen {
        println!("known failing (engine bug, see KNOWN_FAILING): {k}");
    }
    for u in &unexpected {
        println!("{u}\n");
    }
    assert!(
        total >= 150,
        "the suite must have at least 150 cases, has {total}"
    );
    assert!(
        fixed.is_empty(),
        "these KNOWN_FAILING cases pass now: remove them from KNOWN_FAILING: {fixed:#?}"
    );
    assert!(
        unexpected.is_empty(),
        "{} AQL cases failed (see the report above)",
        unexpected.len()
    );
    server.shutdown().await;
}

/// `docs/aql.md` lists the functions with their signatures; every one it lists must
/// exist on the server (an unknown one fails before arity is checked), and the count
/// it states must match the list.
#[tokio::test]
async fn documented_functions_exist() {
    const DOC: &str = include_str!("../../../docs/aql.md");
    let names: Vec<&str> = DOC
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split_once('('))
        .map(|(name, _)| name)
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    let stated: usize = DOC
        .split_once("ThemisDB has **")
        .and_then(|(_, rest)| rest.split_once(" functions**"))
        .and_then(|(n, _)| n.parse().ok())
        .expect("docs/aql.md states how many functions there are");
    assert_eq!(
        names.len(),
        stated,
        "docs/aql.md lists {} functions but says {stated}",
        names.len()
    );
    assert!(stated >= 60, "at least 60 functions, found {stated}");

    let server = TestServer::start().await;
    let client = server.client().await;
    let mut unknown = Vec::new();
    for name in &names {
        // A call with no arguments: either it runs, or it fails for the arguments,
        // but never as an unknown function.
        let query = format!("RETURN {name}()");
        if let Outcome::Failed { message, .. } = run_query(&client, &query, &json!({}), true).await
        {
            if message.contains("unknown function") {
                unknown.push(*name);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "docs/aql.md lists functions the server does not know: {unknown:?}"
    );
    server.shutdown().await;
}

// ---- cases ---------------------------------------------------------------------------

fn read_cases() -> Vec<Case> {
    let mut t = Table::default();
    for_cases(&mut t);
    filter_cases(&mut t);
    sort_limit_cases(&mut t);
    index_sensitive_cases(&mut t);
    let_return_cases(&mut t);
    collect_cases(&mut t);
    subquery_cases(&mut t);
    bind_cases(&mut t);
    operator_cases(&mut t);
    access_cases(&mut t);
    comparison_cases(&mut t);
    null_cases(&mut t);
    string_function_cases(&mut t);
    numeric_function_cases(&mut t);
    array_function_cases(&mut t);
    object_function_cases(&mut t);
    type_function_cases(&mut t);
    date_function_cases(&mut t);
    misc_function_cases(&mut t);
    documented_example_cases(&mut t);
    error_cases(&mut t);
    explain_cases(&mut t);
    t.cases
}

fn write_cases() -> Vec<Case> {
    let mut t = Table::default();
    insert_cases(&mut t);
    update_replace_remove_cases(&mut t);
    upsert_cases(&mut t);
    atomicity_cases(&mut t);
    t.cases
}

fn for_cases(t: &mut Table) {
    t.group("FOR");
    t.rows(
        "over an array",
        "FOR x IN [1, 2, 3] RETURN x * 2",
        json!([2, 4, 6]),
    );
    t.rows(
        "over a range",
        "FOR i IN 1..5 RETURN i",
        json!([1, 2, 3, 4, 5]),
    );
    t.rows(
        "over a descending range",
        "FOR i IN 3..1 RETURN i",
        json!([3, 2, 1]),
    );
    t.rows("over an empty array", "FOR x IN [] RETURN x", json!([]));
    t.one(
        "over a collection visits every document",
        "RETURN LENGTH(FOR u IN users RETURN 1)",
        json!(30),
    );
    t.rows(
        "over a collection, sorted keys",
        "FOR u IN users SORT u._key LIMIT 3 RETURN u._key",
        json!(["u01", "u02", "u03"]),
    );
    t.rows(
        "over a collection: every document is returned with _key and _id",
        "FOR p IN products FILTER p._key == 'p2' RETURN UNSET(p, '_rev')",
        json!([{"_key": "p2", "_id": "products/p2", "name": "Mouse", "price": 19.5, "category": "electronics", "stock": 150}]),
    );
    t.rows(
        "over an attribute's array",
        "FOR u IN users FILTER u._key == 'u01' FOR tag IN u.tags RETURN tag",
        json!(["admin", "dev"]),
    );
    t.rows(
        "over a subquery's results",
        "FOR x IN (FOR i IN 1..3 RETURN i * i) RETURN x",
        json!([1, 4, 9]),
    );
    t.rows(
        "nested FOR is a cross product",
        "FOR a IN [1, 2] FOR b IN ['x', 'y'] RETURN CONCAT(a, b)",
        json!(["1x", "1y", "2x", "2y"]),
    );
    t.rows(
        "nested FOR with FILTER is an inner join",
        "FOR o IN orders FOR u IN users FILTER o.user == u._key SORT o._key RETURN [o._key, u.name]",
        json!([["o01", "Alice"], ["o02", "Alice"], ["o03", "Bob"], ["o04", "Carol"], ["o05", "Carol"],
               ["o06", "Eve"], ["o07", "Grace"], ["o08", "Grace"], ["o09", "Ivan"], ["o10", "Niaj"],
               ["o11", "Niaj"], ["o12", "Trent"], ["o13", "Xena"], ["o15", "Zoe"]]),
    );
    t.rows(
        "join driven from the users side with a filter on both",
        "FOR u IN users FILTER u.city == 'Rome' FOR o IN orders FILTER o.user == u._key AND o.status == 'paid' RETURN {name: u.name, amount: o.amount}",
        json!([{"name": "Grace", "amount": 310}]),
    );
    t.rows(
        "three-way join: orders, users, products",
        "FOR o IN orders FILTER o._key == 'o01' FOR u IN users FILTER u._key == o.user FOR item IN o.items FOR p IN products FILTER p._key == item.sku RETURN [u.name, p.name, item.qty * p.price]",
        json!([["Alice", "Laptop", 999.99], ["Alice", "Desk", 500]]),
    );
    t.rows(
        "left outer join with a subquery",
        "FOR u IN users FILTER u._key IN ['u01', 'u02', 'u04'] SORT u._key LET n = LENGTH(FOR o IN orders FILTER o.user == u._key RETURN 1) RETURN [u.name, n]",
        json!([["Alice", 2], ["Bob", 1], ["Dave", 0]]),
    );
    t.rows(
        "anti-join: orders whose user does not exist",
        "FOR o IN orders FILTER LENGTH(FOR u IN users FILTER u._key == o.user RETURN 1) == 0 RETURN o._key",
        json!(["o14"]),
    );
    t.rows(
        "the loop variable of an inner FOR over an outer one",
        "FOR i IN 1..3 FOR j IN 1..i RETURN [i, j]",
        json!([[1, 1], [2, 1], [2, 2], [3, 1], [3, 2], [3, 3]]),
    );
}

fn filter_cases(t: &mut Table) {
    t.group("FILTER");
    t.rows(
        "numeric comparison; a string age sorts above every number",
        "FOR u IN users FILTER u.age > 50 SORT u.age RETURN u.name",
        json!(["Heidi", "Sybil", "Aaron", "Karl", "Mallory"]),
    );
    t.rows(
        "less-than matches null and missing attributes (null is the smallest value)",
        "FOR u IN users FILTER u.age < 20 SORT u._key RETURN u._key",
        json!(["u04", "u06", "u12"]),
    );
    t.rows(
        "a range with both bounds",
        "FOR u IN users FILTER u.age >= 27 AND u.age <= 29 SORT u._key RETURN u._key",
        json!(["u02", "u09", "u15", "u18", "u24"]),
    );
    t.rows(
        "several FILTERs are ANDed",
        "FOR u IN users FILTER u.city == 'Berlin' FILTER u.active FILTER u.age > 40 SORT u._key RETURN u.name",
        json!(["Carol", "Victor"]),
    );
    t.rows(
        "OR of two conditions (the string age \"42\" is greater than 55)",
        "FOR u IN users FILTER u.city == 'Rome' OR u.age > 55 SORT u._key RETURN u._key",
        json!(["u07", "u11", "u13", "u17", "u19", "u21", "u25", "u27", "u29"]),
    );
    t.rows(
        "== null matches null and missing attributes",
        "FOR u IN users FILTER u.city == null SORT u._key RETURN u.name",
        json!(["Judy", "Liam"]),
    );
    t.rows(
        "!= null excludes null and missing",
        "FOR u IN users FILTER u.age != null SORT u._key LIMIT 3 RETURN u._key",
        json!(["u01", "u02", "u03"]),
    );
    t.one(
        "truthiness of a boolean attribute",
        "RETURN LENGTH(FOR u IN users FILTER u.active RETURN 1)",
        json!(22),
    );
    t.one(
        "NOT of a boolean attribute",
        "RETURN LENGTH(FOR u IN users FILTER NOT u.active RETURN 1)",
        json!(8),
    );
    t.rows(
        "nested attribute",
        "FOR u IN users FILTER u.address.zip == '10115' RETURN u.name",
        json!(["Alice"]),
    );
    t.rows(
        "index access in a filter",
        "FOR u IN users FILTER u.tags[0] == 'admin' SORT u._key RETURN u.name",
        json!(["Alice", "Grace", "Sybil", "Xena"]),
    );
    t.one(
        "IN on an attribute array",
        "RETURN LENGTH(FOR u IN users FILTER 'dev' IN u.tags RETURN 1)",
        json!(13),
    );
    t.rows(
        "attribute IN a literal list",
        "FOR o IN orders FILTER o.status IN ['open', 'cancelled'] SORT o._key RETURN o._key",
        json!(["o02", "o04", "o08", "o10", "o12", "o14"]),
    );
    t.rows(
        "NOT IN",
        "FOR p IN products FILTER p.category NOT IN ['electronics', 'furniture'] SORT p._key RETURN p.name",
        json!(["Pen", "Notebook"]),
    );
    t.rows(
        "LIKE with a prefix",
        "FOR u IN users FILTER u.name LIKE 'A%' SORT u.name RETURN u.name",
        json!(["Aaron", "Alice"]),
    );
    t.rows(
        "regular expression =~ (case-sensitive)",
        r"FOR u IN users FILTER u.email =~ 'example\\.com$' RETURN u.name",
        json!(["Alice"]),
    );
    t.rows(
        "FILTER after a LET",
        "FOR p IN products LET value = p.price * p.stock FILTER value > 1000 SORT value DESC RETURN [p.name, value]",
        json!([["Laptop", 4999.95], ["Desk", 3000], ["Mouse", 2925], ["Monitor", 2170], ["Notebook", 1400], ["Pen", 1250]]),
    );
    t.rows(
        "FILTER on the result of a function",
        "FOR u IN users FILTER LENGTH(u.tags) >= 2 SORT u._key RETURN u._key",
        json!(["u01", "u05", "u14", "u16", "u21", "u24"]),
    );
    t.rows(
        "FILTER on an array of mixed values keeps the truthy ones",
        "FOR v IN [0, 1, '', 'a', [], {}, null, false, true, -0.5] FILTER v RETURN v",
        json!([1, "a", [], {}, true, -0.5]),
    );
    t.rows(
        "FILTER false removes everything",
        "FOR u IN users FILTER false RETURN u",
        json!([]),
    );
    t.rows(
        "FILTER on _key equality",
        "FOR u IN users FILTER u._key == 'u13' RETURN [u.name, u.age]",
        json!([["Mallory", "42"]]),
    );
    t.rows(
        "FILTER on _key IN",
        "FOR u IN users FILTER u._key IN ['u03', 'u01', 'nope'] SORT u._key RETURN u.name",
        json!(["Alice", "Carol"]),
    );
    t.rows(
        "IN with null matches null and missing attributes",
        "FOR u IN users FILTER u.age IN [27, null, 27] SORT u._key RETURN u._key",
        json!(["u02", "u04", "u06", "u09", "u18"]),
    );
    t.rows(
        "a string bound selects only strings",
        "FOR u IN users FILTER u.age >= '4' RETURN u.name",
        json!(["Mallory"]),
    );
    t.rows(
        "equality and range on two attributes",
        "FOR u IN users FILTER u.active == true AND u.score > 90 SORT u._key RETURN u.name",
        json!(["Carol", "Grace", "Mallory", "Xena"]),
    );
    t.rows(
        "an upper bound matches null scores",
        "FOR u IN users FILTER u.active == true AND u.score < 50 SORT u._key RETURN u._key",
        json!(["u12", "u27", "u30"]),
    );
    t.one(
        "a lower string bound excludes null and missing",
        "RETURN LENGTH(FOR u IN users FILTER u.city >= 'P' RETURN 1)",
        json!(13),
    );
    t.rows(
        "IN with null over an attribute some documents lack",
        "FOR u IN users FILTER u.city IN ['Rome', null] SORT u._key RETURN u._key",
        json!(["u07", "u10", "u11", "u12", "u17", "u21", "u25", "u29"]),
    );
    t.rows(
        "string equality does not convert types",
        "FOR u IN users FILTER u.age == 42 RETURN u.name",
        json!([]),
    );
    t.rows(
        "a FILTER between two FORs filters the outer rows",
        "FOR p IN products FILTER p.category == 'office' FOR o IN orders FILTER p._key IN o.items[*].sku SORT p._key, o._key RETURN [p._key, o._key]",
        json!([["p5", "o04"], ["p5", "o09"], ["p5", "o15"], ["p6", "o06"], ["p6", "o12"]]),
    );
}

fn sort_limit_cases(t: &mut Table) {
    t.group("SORT");
    t.rows(
        "ascending with null and missing first and strings after numbers",
        "FOR u IN users SORT u.age, u._key RETURN u._key",
        json!([
            "u04", "u06", "u12", "u05", "u29", "u21", "u26", "u02", "u09", "u18", "u15", "u24",
            "u10", "u17", "u23", "u01", "u14", "u28", "u20", "u07", "u30", "u25", "u16", "u03",
            "u22", "u08", "u19", "u27", "u11", "u13"
        ]),
    );
    t.rows(
        "a ASC, b DESC",
        "FOR u IN users FILTER u.city == 'Berlin' SORT u.active ASC, u.age DESC RETURN u.name",
        json!(["Sybil", "Frank", "Victor", "Carol", "Dana", "Niaj", "Alice", "Ivan", "Zoe"]),
    );
    t.rows(
        "DESC with LIMIT",
        "FOR u IN users SORT u.score DESC LIMIT 3 RETURN u.name",
        json!(["Mallory", "Xena", "Grace"]),
    );
    t.rows(
        "sort by a computed expression",
        "FOR u IN users SORT LENGTH(u.tags) DESC, u._key LIMIT 5 RETURN u._key",
        json!(["u01", "u05", "u14", "u16", "u21"]),
    );
    t.rows(
        "sort of the mixed collection follows the type order null < bool < number < string < array < object",
        "FOR m IN mixed SORT m.v, m._key RETURN m.v",
        json!([null, null, false, true, -1, 0, 2.5, 10, "", "10", "9", "abc", [], [0, 1], [1], {}, {"a": 1}]),
    );
    t.rows(
        "descending type order",
        "FOR m IN mixed FILTER m.v != null SORT m.v DESC LIMIT 4 RETURN m._key",
        json!(["m17", "m16", "m14", "m15"]),
    );
    t.rows(
        "sort an array of strings",
        "FOR s IN ['b', 'ab', 'a', 'aa', 'ba'] SORT s RETURN s",
        json!(["a", "aa", "ab", "b", "ba"]),
    );
    t.rows(
        "sort by several keys over an array",
        "FOR p IN [{a: 2, b: 1}, {a: 1, b: 2}, {a: 2, b: 3}, {a: 1, b: 1}] SORT p.a DESC, p.b RETURN [p.a, p.b]",
        json!([[2, 1], [2, 3], [1, 1], [1, 2]]),
    );

    t.rows(
        "DESC LIMIT over mixed types (an index reads backwards: strings before numbers)",
        "FOR u IN users SORT u.age DESC LIMIT 3 RETURN u._key",
        json!(["u13", "u11", "u27"]),
    );
    t.rows(
        "SORT LIMIT with an offset",
        "FOR u IN users SORT u.age LIMIT 2, 3 RETURN u._key",
        json!(["u12", "u05", "u29"]),
    );
    t.rows(
        "SORT DESC LIMIT on prices",
        "FOR p IN products SORT p.price DESC LIMIT 3 RETURN p.name",
        json!(["Laptop", "Monitor", "Desk"]),
    );
    t.group("LIMIT");
    t.rows(
        "count only",
        "FOR i IN 1..10 LIMIT 3 RETURN i",
        json!([1, 2, 3]),
    );
    t.rows(
        "offset and count",
        "FOR i IN 1..10 LIMIT 2, 3 RETURN i",
        json!([3, 4, 5]),
    );
    t.rows("zero", "FOR i IN 1..10 LIMIT 0 RETURN i", json!([]));
    t.rows(
        "offset past the end",
        "FOR i IN 1..10 LIMIT 20, 5 RETURN i",
        json!([]),
    );
    t.rows(
        "count past the end",
        "FOR i IN 1..3 LIMIT 1, 10 RETURN i",
        json!([2, 3]),
    );
    t.rows(
        "LIMIT after SORT pages through a collection",
        "FOR u IN users SORT u.name LIMIT 10, 3 RETURN u.name",
        json!(["Grace", "Heidi", "Ivan"]),
    );
    t.rows(
        "LIMIT inside a subquery limits per outer row",
        "FOR i IN 1..2 RETURN (FOR j IN 1..5 LIMIT i RETURN j)",
        json!([[1], [1, 2]]),
    );
    t.rows(
        "LIMIT before FILTER",
        "FOR i IN 1..10 LIMIT 5 FILTER i % 2 == 0 RETURN i",
        json!([2, 4]),
    );
}

fn index_sensitive_cases(t: &mut Table) {
    // Each runs on scans and again with indexes on users.age, users.city (sparse),
    // users.[active, score], orders.status, orders.user and products.price.
    t.group("index-sensitive filters");
    t.rows(
        "equality with a string on a numeric attribute",
        "FOR u IN users FILTER u.age == '42' RETURN u.name",
        json!(["Mallory"]),
    );
    t.rows(
        "IN mixing a string and a number",
        "FOR u IN users FILTER u.age IN ['42', 42, 63] SORT u._key RETURN u.name",
        json!(["Karl", "Mallory"]),
    );
    t.one(
        "> null: everything but null and missing",
        "RETURN LENGTH(FOR u IN users FILTER u.age > null RETURN 1)",
        json!(28),
    );
    t.one(
        ">= null: everything",
        "RETURN LENGTH(FOR u IN users FILTER u.age >= null RETURN 1)",
        json!(30),
    );
    t.one(
        "< null: nothing",
        "RETURN LENGTH(FOR u IN users FILTER u.age < null RETURN 1)",
        json!(0),
    );
    t.one(
        "> true: every number and string",
        "RETURN LENGTH(FOR u IN users FILTER u.age > true RETURN 1)",
        json!(28),
    );
    t.one(
        "<= []: every value below arrays",
        "RETURN LENGTH(FOR u IN users FILTER u.age <= [] RETURN 1)",
        json!(30),
    );
    t.rows(
        "a numeric-looking string bound compares as a string",
        "FOR u IN users FILTER u.age > '30' RETURN u.name",
        json!(["Mallory"]),
    );
    t.rows(
        "contradictory bounds",
        "FOR u IN users FILTER u.age > 40 AND u.age < 20 RETURN u",
        json!([]),
    );
    t.rows(
        "two lower bounds on one attribute",
        "FOR u IN users FILTER u.age > 30 FILTER u.age > 50 AND IS_NUMBER(u.age) SORT u.age RETURN u.age",
        json!([51, 56, 58, 63]),
    );
    t.rows(
        "IN a non-array matches nothing",
        "FOR o IN orders FILTER o.status IN 'paid' RETURN o",
        json!([]),
    );
    t.rows(
        "IN an empty array matches nothing",
        "FOR o IN orders FILTER o.status IN [] RETURN o",
        json!([]),
    );
    t.rows(
        "OR of equalities",
        "FOR o IN orders FILTER o.status == 'cancelled' OR o.status == 'open' SORT o._key RETURN o._key",
        json!(["o02", "o04", "o08", "o10", "o12", "o14"]),
    );
    t.rows(
        "compound: equality and == null on the second attribute",
        "FOR u IN users FILTER u.active == true AND u.score == null RETURN u.name",
        json!(["Dana"]),
    );
    t.rows(
        "compound: IN on the first attribute and a range on the second",
        "FOR u IN users FILTER u.active IN [false] AND u.score >= 70 SORT u._key RETURN u._key",
        json!(["u02", "u11", "u28"]),
    );
    t.rows(
        "SORT on two attributes with LIMIT",
        "FOR u IN users SORT u.active, u.score LIMIT 3 RETURN u._key",
        json!(["u08", "u06", "u16"]),
    );
    t.rows(
        "SORT DESC on two attributes with LIMIT",
        "FOR u IN users SORT u.active DESC, u.score DESC LIMIT 3 RETURN u.name",
        json!(["Mallory", "Xena", "Grace"]),
    );
    t.rows(
        "_key compared with non-strings",
        "FOR u IN users FILTER u._key IN [1, 'u01', null, ['u02']] RETURN u._key",
        json!(["u01"]),
    );
    t.rows(
        "_key equality with a number",
        "FOR u IN users FILTER u._key == 1 RETURN u",
        json!([]),
    );
    t.rows(
        "index join with SORT and LIMIT in the subquery",
        "FOR u IN users FILTER u._key IN ['u01', 'u03', 'u14'] SORT u._key RETURN FIRST(FOR o IN orders FILTER o.user == u._key SORT o.amount DESC LIMIT 1 RETURN o._key)",
        json!(["o01", "o05", "o11"]),
    );
    t.check(
        "a long result streams through many batches",
        "FOR i IN 1..5000 RETURN i",
        |rows| {
            let ok = rows.len() == 5000
                && rows
                    .iter()
                    .enumerate()
                    .all(|(i, v)| v.as_u64() == Some(i as u64 + 1));
            ok.then_some(())
                .ok_or_else(|| format!("expected 1..5000 in order, got {} rows", rows.len()))
        },
    );
}

fn let_return_cases(t: &mut Table) {
    t.group("LET");
    t.one("a constant", "LET x = 5 RETURN x * 2", json!(10));
    t.one(
        "several variables in one LET",
        "LET a = 1, b = 2 RETURN a + b",
        json!(3),
    );
    t.one(
        "a variable refers to an earlier one",
        "LET a = [1, 2, 3] LET b = LENGTH(a) RETURN b * 10",
        json!(30),
    );
    t.rows(
        "LET inside a loop sees the loop variable",
        "FOR i IN 1..3 LET sq = i * i RETURN sq",
        json!([1, 4, 9]),
    );
    t.rows(
        "FOR over a LET array",
        "LET a = ['x', 'y'] FOR v IN a RETURN v",
        json!(["x", "y"]),
    );
    t.one(
        "LET a subquery",
        "LET names = (FOR u IN users FILTER u.city == 'Rome' SORT u.name RETURN u.name) RETURN names",
        json!(["Cyrus", "Grace", "Karl", "Quentin", "Uma", "Yara"]),
    );

    t.group("RETURN");
    t.one("a literal without FOR", "RETURN 42", json!(42));
    t.one(
        "nested literals",
        "RETURN [1, 'two', null, true, [3], {a: {b: [4]}}]",
        json!([1, "two", null, true, [3], {"a": {"b": [4]}}]),
    );
    t.one(
        "object shorthand {name}",
        "LET name = 'x' LET n = 2 RETURN {name, n}",
        json!({"name": "x", "n": 2}),
    );
    t.one(
        "computed attribute names",
        "RETURN {[CONCAT('a', 'b')]: 1, ['c']: 2}",
        json!({"ab": 1, "c": 2}),
    );
    t.one(
        "string escapes",
        r#"RETURN ["a\"b", 'it\'s', "back\\slash", "tab\tend", "\u00e4", 'line\nbreak']"#,
        json!([
            "a\"b",
            "it's",
            "back\\slash",
            "tab\tend",
            "ä",
            "line\nbreak"
        ]),
    );
    t.one(
        "number literals",
        "RETURN [0x1F, 0b101, .5, 1e2, 2.5E-1, -0]",
        json!([31, 5, 0.5, 100, 0.25, 0]),
    );
    t.one(
        "keywords as attribute names after a dot",
        "LET o = {'filter': 1, 'for': 2, 'null': 3} RETURN [o.filter, o.for, o.null]",
        json!([1, 2, 3]),
    );
    t.one(
        "quoted attribute names",
        r#"RETURN {'a b': 1, "c-d": 2, `e`: 3}"#,
        json!({"a b": 1, "c-d": 2, "e": 3}),
    );
    t.any_order(
        "DISTINCT over a collection attribute (null and missing are one value)",
        "FOR u IN users RETURN DISTINCT u.city",
        json!([null, "Berlin", "London", "Paris", "Rome"]),
    );
    t.any_order(
        "DISTINCT of arrays and numbers (1 and 1.0 are equal)",
        "FOR x IN [[1, 2], [1, 2], [2], 1, 1.0, '1'] RETURN DISTINCT x",
        json!([[1, 2], [2], 1, "1"]),
    );
    t.rows(
        "keywords are case-insensitive",
        "for x in [1, 2] filter x > 1 return x",
        json!([2]),
    );
    t.one(
        "comments are ignored",
        "RETURN /* block */ 1 + // line\n 1",
        json!(2),
    );
    t.rows(
        "a projection of documents",
        "FOR p IN products FILTER p.price < 5 SORT p.price RETURN {name: p.name, price: p.price}",
        json!([{"name": "Pen", "price": 1.25}, {"name": "Notebook", "price": 3.5}]),
    );
}

fn collect_cases(t: &mut Table) {
    t.group("COLLECT");
    t.rows(
        "groups, sorted by group value; null and missing form one group",
        "FOR u IN users COLLECT city = u.city RETURN city",
        json!([null, "Berlin", "London", "Paris", "Rome"]),
    );
    t.rows(
        "WITH COUNT INTO",
        "FOR u IN users COLLECT city = u.city WITH COUNT INTO n RETURN [city, n]",
        json!([
            [null, 2],
            ["Berlin", 9],
            ["London", 6],
            ["Paris", 7],
            ["Rome", 6]
        ]),
    );
    t.rows(
        "INTO g captures the variables of each member",
        "FOR u IN users FILTER u.city IN ['Rome', 'London'] COLLECT city = u.city INTO g RETURN {city, names: SORTED(g[*].u.name)}",
        json!([{"city": "London", "names": ["Aaron", "Dave", "Heidi", "Olivia", "Rupert", "Walter"]},
               {"city": "Rome", "names": ["Cyrus", "Grace", "Karl", "Quentin", "Uma", "Yara"]}]),
    );
    t.rows(
        "INTO g = projection",
        "FOR u IN users FILTER u.city == 'Paris' COLLECT active = u.active INTO names = u.name RETURN {active, names: SORTED(names)}",
        json!([{"active": false, "names": ["Bella", "Bob", "Peggy"]},
               {"active": true, "names": ["Eve", "Mallory", "Trent", "Xena"]}]),
    );
    t.rows(
        "INTO g holds every variable in scope, including LETs",
        "FOR x IN [1, 2, 1] LET y = x * 10 COLLECT v = x INTO g RETURN {v, g}",
        json!([{"v": 1, "g": [{"x": 1, "y": 10}, {"x": 1, "y": 10}]}, {"v": 2, "g": [{"x": 2, "y": 20}]}]),
    );
    t.rows(
        "AGGREGATE with groups (MIN/MAX/AVG skip nulls; the string age \"42\" is the maximum)",
        "FOR u IN users COLLECT city = u.city AGGREGATE n = COUNT(1), avg = AVG(u.score), oldest = MAX(u.age), youngest = MIN(u.age) RETURN {city, n, avg, oldest, youngest}",
        json!([
            {"city": null, "n": 2, "avg": 55, "oldest": 30, "youngest": 19},
            {"city": "Berlin", "n": 9, "avg": 73.9375, "oldest": 56, "youngest": 26},
            {"city": "London", "n": 6, "avg": 64.83333333333333, "oldest": 58, "youngest": 27},
            {"city": "Paris", "n": 7, "avg": 80.21428571428571, "oldest": "42", "youngest": 22},
            {"city": "Rome", "n": 6, "avg": 71.33333333333333, "oldest": 63, "youngest": 23}
        ]),
    );
    t.rows(
        "AGGREGATE SUM per group",
        "FOR o IN orders COLLECT status = o.status AGGREGATE total = SUM(o.amount), n = LENGTH(1) RETURN {status, total, n}",
        json!([{"status": "cancelled", "total": 70.75, "n": 2}, {"status": "open", "total": 162, "n": 4},
               {"status": "paid", "total": 1281.49, "n": 9}]),
    );
    t.rows(
        "AGGREGATE without groups",
        "FOR u IN users COLLECT AGGREGATE lo = MIN(u.score), hi = MAX(u.score), total = SUM(u.score) RETURN [lo, hi, total]",
        json!([[40, 99, 2080]]),
    );
    t.rows(
        "AGGREGATE SORTED_UNIQUE",
        "FOR u IN users FILTER u.city != null COLLECT active = u.active AGGREGATE cities = SORTED_UNIQUE(u.city) RETURN [active, cities]",
        json!([[false, ["Berlin", "London", "Paris", "Rome"]], [true, ["Berlin", "London", "Paris", "Rome"]]]),
    );
    t.rows(
        "WITH COUNT INTO without groups counts everything",
        "FOR u IN users COLLECT WITH COUNT INTO total RETURN total",
        json!([30]),
    );
    t.rows(
        "WITH COUNT INTO over no input is 0",
        "FOR x IN [] COLLECT WITH COUNT INTO n RETURN n",
        json!([0]),
    );
    t.rows(
        "COLLECT with groups over no input gives no rows",
        "FOR x IN [] COLLECT v = x WITH COUNT INTO n RETURN [v, n]",
        json!([]),
    );
    t.rows(
        "two grouping variables",
        "FOR u IN users COLLECT city = u.city, active = u.active WITH COUNT INTO n RETURN [city, active, n]",
        json!([[null, true, 2], ["Berlin", false, 2], ["Berlin", true, 7], ["London", false, 2], ["London", true, 4],
               ["Paris", false, 3], ["Paris", true, 4], ["Rome", false, 1], ["Rome", true, 5]]),
    );
    t.rows(
        "over an array",
        "FOR x IN [3, 1, 3, 2, 1, 3] COLLECT v = x WITH COUNT INTO n RETURN [v, n]",
        json!([[1, 2], [2, 1], [3, 3]]),
    );
    t.rows(
        "groups of mixed types follow the type order; 1 and 1.0 are one group",
        "FOR x IN ['a', 1, null, true, [1], 1.0, 'a', {}] COLLECT v = x WITH COUNT INTO n RETURN [v, n]",
        json!([[null, 1], [true, 1], [1, 2], ["a", 2], [[1], 1], [{}, 1]]),
    );
    t.rows(
        "group by an expression (TO_NUMBER of the string age)",
        "FOR u IN users COLLECT decade = FLOOR(u.age / 10) * 10 WITH COUNT INTO n RETURN [decade, n]",
        json!([[0, 2], [10, 1], [20, 9], [30, 8], [40, 6], [50, 3], [60, 1]]),
    );
    t.rows(
        "SORT and LIMIT after COLLECT",
        "FOR u IN users COLLECT city = u.city WITH COUNT INTO n SORT n DESC, city LIMIT 2 RETURN city",
        json!(["Berlin", "Paris"]),
    );
    t.rows(
        "FILTER after COLLECT (HAVING)",
        "FOR o IN orders COLLECT user = o.user WITH COUNT INTO n FILTER n > 1 RETURN user",
        json!(["u01", "u03", "u07", "u14"]),
    );
    t.rows(
        "COLLECT in a subquery keeps the outer variables",
        "FOR i IN [1, 2] RETURN (FOR x IN [1, 1, 2] COLLECT v = x WITH COUNT INTO n RETURN [i, v, n])",
        json!([[[1, 1, 2], [1, 2, 1]], [[2, 1, 2], [2, 2, 1]]]),
    );
    t.rows(
        "join then COLLECT: paid total per city",
        "FOR o IN orders FILTER o.status == 'paid' FOR u IN users FILTER u._key == o.user COLLECT city = u.city AGGREGATE total = SUM(o.amount) RETURN [city, total]",
        json!([["Berlin", 456.49], ["Paris", 515], ["Rome", 310]]),
    );
}

fn subquery_cases(t: &mut Table) {
    t.group("subquery");
    t.one(
        "top 3 in a LET",
        "LET top = (FOR u IN users SORT u.score DESC LIMIT 3 RETURN u.name) RETURN top",
        json!(["Mallory", "Xena", "Grace"]),
    );
    t.one(
        "as a function argument",
        "RETURN SUM(FOR o IN orders FILTER o.status == 'paid' RETURN o.amount)",
        json!(1281.49),
    );
    t.rows(
        "correlated with the outer row",
        "FOR u IN users FILTER u._key IN ['u01', 'u07'] SORT u._key RETURN {name: u.name, total: SUM(FOR o IN orders FILTER o.user == u._key RETURN o.amount)}",
        json!([{"name": "Alice", "total": 155.5}, {"name": "Grace", "total": 352}]),
    );
    t.one(
        "nested subqueries",
        "RETURN (FOR i IN 1..2 RETURN (FOR j IN 1..i RETURN j))",
        json!([[1], [1, 2]]),
    );
    t.one(
        "empty subquery",
        "RETURN (FOR u IN users FILTER IS_NUMBER(u.age) AND u.age > 100 RETURN u)",
        json!([]),
    );
    t.one(
        "FIRST of a sorted subquery",
        "RETURN FIRST(FOR u IN users SORT u.age DESC RETURN u.name)",
        json!("Mallory"),
    );
    t.rows(
        "subquery result used in a FILTER, flattened",
        "FOR p IN products FILTER p._key IN (FOR o IN orders FILTER o.status == 'open' RETURN o.items[*].sku)[**] SORT p._key RETURN p.name",
        json!(["Laptop", "Mouse", "Desk"]),
    );
    t.one(
        "RETURN DISTINCT inside a subquery",
        "RETURN SORTED(FOR o IN orders RETURN DISTINCT o.status)",
        json!(["cancelled", "open", "paid"]),
    );
    t.one(
        "subquery sees an outer LET",
        "LET lim = 60 RETURN LENGTH(FOR u IN users FILTER u.age > lim AND IS_NUMBER(u.age) RETURN u)",
        json!(1),
    );
    t.one(
        "COLLECT in a subquery",
        "LET cities = (FOR u IN users COLLECT c = u.city RETURN c) RETURN LENGTH(cities)",
        json!(5),
    );
}

fn bind_cases(t: &mut Table) {
    t.group("bind parameters");
    t.rows_b(
        "a value of every JSON type",
        "RETURN [@a, @b, @c, @d, @e, @f]",
        json!({"a": null, "b": true, "c": 1.5, "d": "x", "e": [1, [2]], "f": {"k": {"l": 1}}}),
        json!([[null, true, 1.5, "x", [1, [2]], {"k": {"l": 1}}]]),
    );
    t.rows_b(
        "@@collection and @value",
        "FOR u IN @@coll FILTER u._key == @key RETURN u.name",
        json!({"@coll": "users", "key": "u02"}),
        json!(["Bob"]),
    );
    t.rows_b(
        "in FILTER and LIMIT",
        "FOR u IN users FILTER u.age > @min SORT u._key LIMIT @n RETURN u._key",
        json!({"min": 50, "n": 2}),
        json!(["u08", "u11"]),
    );
    t.rows_b(
        "as an attribute name with []",
        "FOR u IN users FILTER u._key == 'u01' RETURN u[@attr]",
        json!({"attr": "name"}),
        json!(["Alice"]),
    );
    t.rows_b(
        "as an attribute name with .@",
        "FOR u IN users FILTER u._key == 'u01' RETURN u.@attr",
        json!({"attr": "city"}),
        json!(["Berlin"]),
    );
    t.rows_b(
        "an array for IN",
        "RETURN LENGTH(FOR u IN users FILTER u.city IN @cities RETURN 1)",
        json!({"cities": ["Rome", "Paris"]}),
        json!([13]),
    );
    t.rows_b("used twice", "RETURN @x * @x", json!({"x": 7}), json!([49]));
    t.rows_b(
        "@@collection as a value",
        "RETURN LENGTH(@@c)",
        json!({"@c": "products"}),
        json!([8]),
    );
    t.rows_b(
        "a bind string is data, never AQL",
        "FOR u IN users FILTER u.name == @name RETURN u._key",
        json!({"name": "' OR true OR '"}),
        json!([]),
    );
}

fn operator_cases(t: &mut Table) {
    t.group("arithmetic");
    t.one(
        "precedence and associativity",
        "RETURN [1 + 2 * 3, (1 + 2) * 3, 2 - 3 - 4, 2 * 3 % 4, -2 * -3, 10 / 4, 7 % 3, -7 % 3]",
        json!([7, 9, -5, 2, 6, 2.5, 1, -1]),
    );
    t.one(
        "division and modulus by zero are null",
        "RETURN [1 / 0, 5 % 0, 0 / 0]",
        json!([null, null, null]),
    );
    t.one(
        "operands are cast with TO_NUMBER (ArangoDB's documented examples)",
        "RETURN [1 + 'a', 1 + '99', 1 + null, null + 1, 3 + [], 24 + [2], 24 + [2, 4], 25 - null, 17 - true, 23 * {}, 5 * [7], 24 / '12']",
        json!([1, 100, 1, 1, 3, 26, 24, 25, 16, 0, 35, 2]),
    );
    t.one(
        "string + is not concatenation",
        "RETURN ['foo' + 'bar', 'foo' + 123, '123' + 200]",
        json!([0, 123, 323]),
    );
    t.one(
        "unary minus and plus",
        "RETURN [-(-3), +'5', -[3], - 2.5]",
        json!([3, 5, -3, -2.5]),
    );
    t.one(
        "floating point",
        "RETURN [0.5 + 0.25, 1e3, 2.5e-1 * 4, 1 / 3]",
        json!([0.75, 1000, 1, 0.3333333333333333]),
    );
    t.one(
        "integers are exact",
        "RETURN [9007199254740991 + 0, 123456789 * 1000]",
        json!([9_007_199_254_740_991_i64, 123_456_789_000_i64]),
    );

    t.group("logical");
    t.one(
        "AND, OR, NOT and their symbols",
        "RETURN [true AND false, true && true, false OR true, false || false, NOT true, !false]",
        json!([false, true, true, false, false, true]),
    );
    t.one(
        "AND/OR return an operand",
        "RETURN [1 && 2, 0 && 2, null && true, 'a' || 'b', '' || 'b', null || false, 0 || null, [] && 'x']",
        json!([2, 0, null, "a", "b", false, null, "x"]),
    );
    t.one(
        "NOT converts to bool",
        "RETURN [NOT 0, NOT 'a', !!'', !![], !!{}, NOT null, !!-0.0]",
        json!([true, false, false, true, true, true, false]),
    );
    t.one(
        "short-circuit evaluation never evaluates the other side",
        "RETURN [false && FAIL('boom'), true || FAIL('boom'), null AND FAIL('boom')]",
        json!([false, true, null]),
    );
    t.one(
        "precedence: AND over OR, NOT over ==, IN over ==, < over ==",
        "RETURN [true || false && false, NOT false == false, 2 IN [2] == true, 1 < 2 == true, 1 + 2 < 4]",
        json!([true, false, true, true, true]),
    );

    t.group("ternary");
    t.one(
        "condition ? a : b and the ?: shorthand",
        "RETURN [1 > 2 ? 'y' : 'n', 0 ? 'y' : 'n', [] ? 'y' : 'n', null ?: 'd', 'v' ?: 'd', 0 ?: 'd']",
        json!(["n", "n", "y", "d", "v", "d"]),
    );
    t.one(
        "right-associative",
        "RETURN false ? 1 : true ? 2 : 3",
        json!(2),
    );
    t.rows(
        "on data",
        "FOR u IN users FILTER u._key IN ['u01', 'u02'] SORT u._key RETURN u.active ? 'yes' : 'no'",
        json!(["yes", "no"]),
    );
    t.one(
        "only the chosen branch is evaluated",
        "RETURN true ? 1 : FAIL('not evaluated')",
        json!(1),
    );

    t.group("range");
    t.one("ascending", "RETURN 1..4", json!([1, 2, 3, 4]));
    t.one("descending", "RETURN 4..1", json!([4, 3, 2, 1]));
    t.one("single element", "RETURN 2..2", json!([2]));
    t.one("negative bounds", "RETURN -2..1", json!([-2, -1, 0, 1]));
    t.one(
        "expressions as bounds",
        "RETURN (1 + 1)..(2 * 2)",
        json!([2, 3, 4]),
    );
    t.one(
        "large range length",
        "RETURN LENGTH(1..100000)",
        json!(100000),
    );

    t.group("IN");
    t.one(
        "IN and NOT IN",
        "RETURN [2 IN [1, 2, 3], 4 IN [1, 2, 3], 'a' IN 'abc', null IN [null], [1] IN [[1]], 1 IN [1.0], 4 NOT IN [1, 2], 1 NOT IN null, {a: 1} IN [{a: 1}]]",
        json!([true, false, false, true, true, true, true, true, true]),
    );
    t.one(
        "IN an empty array",
        "RETURN [1 IN [], null IN []]",
        json!([false, false]),
    );
    t.one(
        "IN uses strict equality",
        "RETURN ['1' IN [1], 0 IN [false, null, '']]",
        json!([false, false]),
    );

    t.group("LIKE");
    t.one(
        "wildcards, case-sensitivity and escapes",
        r"RETURN ['abc' LIKE 'a%', 'abc' LIKE 'a_c', 'abc' LIKE 'A%', 'abc' LIKE '%b%', 'abc' LIKE 'ab', 'a%c' LIKE 'a\\%c', 'abc' LIKE 'a\\%c', 'a_c' LIKE 'a\\_c', 'abc' NOT LIKE 'x%']",
        json!([true, true, false, true, false, true, false, true, true]),
    );
    t.one(
        "operands are converted to strings",
        "RETURN [12345 LIKE '12%', null LIKE '', true LIKE 't%']",
        json!([true, true, true]),
    );
    t.one(
        "_ matches one character, not one byte",
        "RETURN ['über' LIKE '_ber', 'ab' LIKE '_', '' LIKE '%']",
        json!([true, false, true]),
    );
    t.one(
        "regex metacharacters in a LIKE pattern are literal",
        "RETURN ['a.c' LIKE 'a.c', 'abc' LIKE 'a.c', '(x)' LIKE '(%)', 'a+' LIKE 'a+']",
        json!([true, false, true, true]),
    );

    t.group("regex =~ !~");
    t.one(
        "matches anywhere unless anchored",
        r"RETURN ['abc' =~ '^a.c$', 'abc' =~ 'B', 'abc' !~ 'b', 'foo123' =~ '[0-9]+', 'x' !~ 'y', 'abc' =~ 'b']",
        json!([true, false, false, true, true, true]),
    );
    t.one(
        "case-insensitive flag and escapes",
        r"RETURN ['ABC' =~ '(?i)abc', 'a.b' =~ 'a\\.b', 'axb' =~ 'a\\.b']",
        json!([true, true, false]),
    );
    t.one(
        "the left side is converted to a string",
        "RETURN [123 =~ '^12', null =~ '^$']",
        json!([true, true]),
    );
}

fn access_cases(t: &mut Table) {
    t.group("attribute and index access");
    t.one("a.b.c", "RETURN {a: {b: {c: 7}}}.a.b.c", json!(7));
    t.one(
        r#"a["b"]"#,
        r#"RETURN [{a: 1}["a"], {'a b': 2}['a b']]"#,
        json!([1, 2]),
    );
    t.one(
        "a[0], a[-1] and out of range",
        "LET a = [10, 20, 30] RETURN [a[0], a[2], a[-1], a[-3], a[3], a[-4]]",
        json!([10, 30, 30, 10, null, null]),
    );
    t.one(
        "access on null and on non-objects is null",
        "LET x = null LET n = 5 RETURN [x.a, x.a.b, x[0], n.a, 'abc'[0], [1, 2].a, {a: 1}.b]",
        json!([null, null, null, null, null, null, null]),
    );
    t.one(
        "mixed chains",
        "RETURN {a: [1, {b: [2, 3]}]}.a[1].b[-1]",
        json!(3),
    );
    t.rows(
        "on documents",
        "FOR u IN users FILTER u._key == 'u01' RETURN [u.address.geo.lat, u['address']['zip'], u.tags[-1], u.nope.deeper, u.tags[5]]",
        json!([[52.52, "10115", "dev", null, null]]),
    );
    t.rows(
        "a computed attribute name",
        "LET k = 'name' FOR u IN users FILTER u._key == 'u02' RETURN u[k]",
        json!(["Bob"]),
    );

    t.group("array expansion");
    t.one(
        "[*].attr",
        "RETURN [{a: 1}, {a: 2}, {b: 3}][*].a",
        json!([1, 2, null]),
    );
    t.one("[*] alone", "RETURN [1, 2][*]", json!([1, 2]));
    t.one(
        "inline FILTER",
        "RETURN [1, 2, 3, 4][* FILTER CURRENT > 2]",
        json!([3, 4]),
    );
    t.one(
        "inline LIMIT",
        "RETURN [1, 2, 3, 4][* LIMIT 2]",
        json!([1, 2]),
    );
    t.one(
        "inline RETURN",
        "RETURN [1, 2, 3][* RETURN CURRENT * 10]",
        json!([10, 20, 30]),
    );
    t.one(
        "FILTER, LIMIT and RETURN together",
        "RETURN [1, 2, 3, 4, 5][* FILTER CURRENT % 2 == 1 LIMIT 2 RETURN CURRENT * 2]",
        json!([2, 6]),
    );
    t.one(
        "nested expansion",
        "RETURN [{f: [{n: 'a'}, {n: 'b'}]}, {f: [{n: 'c'}]}][*].f[*].n",
        json!([["a", "b"], ["c"]]),
    );
    t.one(
        "[**] flattens one level",
        "RETURN [[1, 2], [3, [4]]][**]",
        json!([1, 2, 3, [4]]),
    );
    t.one(
        "[***] flattens two levels",
        "RETURN [[[1]], [[2, [3]]]][***]",
        json!([1, 2, [3]]),
    );
    t.one(
        "expansion of a non-array is an empty array",
        "LET x = null LET o = {a: 1} RETURN [x[*].a, o[*], 'abc'[*]]",
        json!([[], [], []]),
    );
    t.rows(
        "on documents",
        "FOR o IN orders FILTER o._key == 'o01' RETURN o.items[*].sku",
        json!([["p1", "p3"]]),
    );
    t.rows(
        "inline FILTER on documents",
        "FOR o IN orders FILTER o._key IN ['o01', 'o15'] SORT o._key RETURN o.items[* FILTER CURRENT.qty > 1].sku",
        json!([["p3"], ["p5"]]),
    );
    t.one(
        "flatten results of a subquery",
        "RETURN SORTED_UNIQUE((FOR o IN orders RETURN o.items[*].sku)[**])",
        json!(["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"]),
    );
    t.rows(
        "expansion of a missing attribute",
        "FOR u IN users FILTER u._key == 'u06' RETURN u.tags[*]",
        json!([[]]),
    );
}

fn comparison_cases(t: &mut Table) {
    t.group("comparison");
    t.one(
        "type order null < bool < number < string < array < object",
        "RETURN [null < false, false < true, true < 0, 0 < '', '' < ' ', '0' < 'abc', 'abc' < [], [] < {}, null < [], true < {}]",
        json!([true, true, true, true, true, true, true, true, true, true]),
    );
    t.one(
        "no conversion between types",
        "RETURN [1 == 1.0, '1' == 1, null == false, 0 == false, '' == null, [] == [], {} == {}, '10' < '9', 10 < 9]",
        json!([true, false, false, false, false, true, true, true, false]),
    );
    t.one(
        "arrays compare element by element (ArangoDB's examples)",
        "RETURN [[] < [0], [1] < [2], [1, 2] < [2], [99, 99] < [100], [false] < [true], [false, 1] < [false, ''], [] == [null], [1] == [1, null]]",
        json!([true, true, true, true, true, true, true, true]),
    );
    t.one(
        "objects compare by sorted attribute names (ArangoDB's examples)",
        r#"RETURN [{} == {"a": null}, {} < {"a": 1}, {"a": 1} < {"a": 2}, {"b": 1} < {"a": 0}, {"a": {"c": true}} < {"a": {"c": 0}}, {"a": {"c": true, "a": 0}} < {"a": {"c": false, "a": 1}}, {"a": 1, "b": 2} == {"b": 2, "a": 1}]"#,
        json!([true, true, true, true, true, true, true]),
    );
    t.one(
        "<=, >=, !=",
        "RETURN [1 <= 1, 2 >= 3, 'a' != 'a', null != 0, [1] >= [1], 'b' >= 'a']",
        json!([true, false, false, true, true, true]),
    );
    t.one(
        "strings compare character by character",
        "RETURN ['a' < 'aa', 'abc' < 'abd', 'b' > 'abc', '' < 'a', 'Berlin' < 'Paris']",
        json!([true, true, true, true, true]),
    );
    t.rows(
        "a range filter over mixed types",
        "FOR m IN mixed FILTER m.v > 0 AND m.v < 'a' SORT m._key RETURN m.v",
        json!([2.5, 10, "", "10", "9"]),
    );
    t.rows(
        "equality with an empty array matches only the empty array",
        "FOR m IN mixed FILTER m.v == [] RETURN m._key",
        json!(["m13"]),
    );
    t.rows(
        "IN with falsy values matches by strict equality",
        "FOR m IN mixed FILTER m.v IN [0, '', false, null] SORT m._key RETURN m._key",
        json!(["m01", "m02", "m03", "m06", "m09"]),
    );
    t.rows(
        "COLLECT by TYPENAME",
        "FOR m IN mixed COLLECT t = TYPENAME(m.v) WITH COUNT INTO n RETURN [t, n]",
        json!([
            ["array", 3],
            ["bool", 2],
            ["null", 2],
            ["number", 4],
            ["object", 2],
            ["string", 4]
        ]),
    );
    t.one(
        "MIN/MAX over mixed types (MIN skips null)",
        "RETURN [MIN(mixed[*].v), MAX(mixed[*].v)]",
        json!([false, {"a": 1}]),
    );
}

fn null_cases(t: &mut Table) {
    t.group("null handling");
    t.one(
        "null compares as the smallest value",
        "RETURN [null == null, null < 0, null < false, null > -1, null == 0, null == '', null <= null]",
        json!([true, true, true, false, false, false, true]),
    );
    t.one(
        "null in arithmetic is 0",
        "RETURN [null + 1, 5 - null, null * 3]",
        json!([1, 5, 0]),
    );
    t.one(
        "missing attributes are null",
        "LET doc = {a: 1} RETURN [doc.b, doc.b.c, doc.a.c, HAS(doc, 'b')]",
        json!([null, null, null, false]),
    );
    t.one(
        "string functions treat null as ''",
        "RETURN [LENGTH(null), UPPER(null), CONCAT('a', null, 'b'), TO_STRING(null), TO_NUMBER(null), CONCAT_SEPARATOR('-', 'a', null, 'b')]",
        json!([0, "", "ab", "", 0, "a-b"]),
    );
    t.one(
        "aggregate functions skip null",
        "RETURN [SUM([1, null, 2]), AVERAGE([null, 2, 4]), MIN([null, 3, 1]), MAX([null]), AVERAGE([]), LENGTH([null, null])]",
        json!([3, 3, 1, null, null, 2]),
    );
    t.one(
        "empty-array accessors return null",
        "RETURN [FIRST([]), LAST([]), NTH([1], 5), [][0]]",
        json!([null, null, null, null]),
    );
    t.one(
        "NOT_NULL skips nulls",
        "RETURN NOT_NULL(null, null, 0, 1)",
        json!(0),
    );
    t.one(
        "null is falsy",
        "RETURN [null ? 'yes' : 'no', TO_BOOL(null), NOT null]",
        json!(["no", false, true]),
    );
    t.rows(
        "missing attributes in a projection",
        "FOR u IN users FILTER u._key == 'u06' RETURN {age: u.age, tags: u.tags, hasAge: HAS(u, 'age')}",
        json!([{"age": null, "tags": null, "hasAge": false}]),
    );
    t.rows(
        "stored null and missing are both == null",
        "FOR u IN users FILTER u.age == null SORT u._key RETURN [u.name, HAS(u, 'age')]",
        json!([["Dave", true], ["Frank", false]]),
    );
    t.one(
        "SORTED puts null first",
        "RETURN SORTED([3, null, 1])",
        json!([null, 1, 3]),
    );
}

fn string_function_cases(t: &mut Table) {
    t.group("string functions");
    t.one(
        "LENGTH / COUNT / CHAR_LENGTH",
        "RETURN [LENGTH('abc'), LENGTH('Äpfel'), LENGTH([1, 2]), LENGTH({a: 1, b: 2}), LENGTH(true), LENGTH(false), LENGTH(123), COUNT([1, 2, 3]), CHAR_LENGTH('Äpfel')]",
        json!([3, 5, 2, 2, 1, 0, 3, 3, 5]),
    );
    t.one(
        "LENGTH of a collection counts its documents",
        "RETURN LENGTH(users)",
        json!(30),
    );
    t.one(
        "CONCAT",
        "RETURN [CONCAT('foo', 'bar', 'baz'), CONCAT(1, 2, 3), CONCAT('foo', [5, 6], {bar: 'baz'}), CONCAT(['foo', 'bar', 'baz']), CONCAT('a', null, true)]",
        json!(["foobarbaz", "123", "foo[5,6]{\"bar\":\"baz\"}", "foobarbaz", "atrue"]),
    );
    t.one(
        "CONCAT_SEPARATOR",
        "RETURN [CONCAT_SEPARATOR(', ', 'foo', 'bar', 'baz'), CONCAT_SEPARATOR(', ', ['foo', 'bar', 'baz']), CONCAT_SEPARATOR('-', 1, 2)]",
        json!(["foo, bar, baz", "foo, bar, baz", "1-2"]),
    );
    t.one(
        "LOWER / UPPER",
        "RETURN [LOWER('AVOcado'), UPPER('avoCADO'), UPPER('straße'), LOWER(12)]",
        json!(["avocado", "AVOCADO", "STRASSE", "12"]),
    );
    t.one(
        "SUBSTRING",
        "RETURN [SUBSTRING('Holy Guacamole!', 5), SUBSTRING('Holy Guacamole!', 10, 2), SUBSTRING('Holy Guacamole!', -10, 5), SUBSTRING('Äpfel', 1, 2), SUBSTRING('abc', 5)]",
        json!(["Guacamole!", "mo", "Guaca", "pf", ""]),
    );
    t.one(
        "SPLIT",
        "RETURN [SPLIT('foo-bar-baz', '-'), SPLIT('foo-bar-baz', '-', 1), SPLIT('foo, bar & baz', [', ', ' & ']), SPLIT('abc', ''), SPLIT('abc', ',')]",
        json!([["foo", "bar", "baz"], ["foo"], ["foo", "bar", "baz"], ["a", "b", "c"], ["abc"]]),
    );
    t.one(
        "CONTAINS",
        "RETURN [CONTAINS('foobarbaz', 'bar'), CONTAINS('foobarbaz', 'horse'), CONTAINS('foobarbaz', 'ba', true), CONTAINS('foobarbaz', 'horse', true)]",
        json!([true, false, 3, -1]),
    );
    t.one(
        "FIND_FIRST / FIND_LAST",
        "RETURN [FIND_FIRST('foobarbaz', 'ba'), FIND_FIRST('foobarbaz', 'ba', 4), FIND_FIRST('foobarbaz', 'ba', 0, 3), FIND_LAST('foobarbaz', 'ba'), FIND_LAST('foobarbaz', 'ba', 7), FIND_LAST('foobarbaz', 'ba', 0, 4)]",
        json!([3, 6, -1, 6, -1, 3]),
    );
    t.one(
        "LEFT / RIGHT",
        "RETURN [LEFT('foobar', 3), RIGHT('foobar', 3), LEFT('foobar', 10), RIGHT('foo', 0)]",
        json!(["foo", "bar", "foobar", ""]),
    );
    t.one(
        "TRIM / LTRIM / RTRIM",
        "RETURN [TRIM('  foo bar  '), TRIM('  foo bar  ', 1), TRIM('  foo bar  ', 2), TRIM('--==[foo-bar]==--', '-=[]'), LTRIM('  foo  '), RTRIM('  foo  '), LTRIM('--==[foo-bar]==--', '-=[]'), RTRIM('--==[foo-bar]==--', '-=[]')]",
        json!(["foo bar", "foo bar  ", "  foo bar", "foo-bar", "foo  ", "  foo", "foo-bar]==--", "--==[foo-bar"]),
    );
    t.one(
        "SUBSTITUTE",
        "RETURN [SUBSTITUTE('the quick brown foxx', 'quick', 'lazy'), SUBSTITUTE('the quick brown foxx', ['quick', 'foxx'], ['slow', 'dog']), SUBSTITUTE('the quick brown foxx', {quick: 'small', brown: 'slow', foxx: 'ant'}), SUBSTITUTE('the quick brown foxx', ['the', 'foxx'], ['that', 'dog'], 1)]",
        json!(["the lazy brown foxx", "the slow brown dog", "the small slow ant", "that quick brown foxx"]),
    );
    t.one(
        "REGEX_TEST",
        "RETURN [REGEX_TEST('the quick brown fox', 'the.*fox'), REGEX_TEST('the quick brown fox', '^(a|b)'), REGEX_TEST('Quick', 'quick', true), REGEX_TEST('Quick', 'quick')]",
        json!([true, false, true, false]),
    );
    t.one(
        "REGEX_TEST with an invalid pattern is null",
        "RETURN REGEX_TEST('x', '[')",
        json!(null),
    );
    t.one(
        "REGEX_MATCHES",
        r"RETURN [REGEX_MATCHES('My-us3r_n4m3', '^[a-z0-9_-]{3,16}$', true), REGEX_MATCHES('#4d82h4', '^#?([a-f0-9]{6}|[a-f0-9]{3})$', true), REGEX_MATCHES('john@doe.com', '^([a-z0-9_\\.-]+)@([\\da-z-]+)\\.([a-z\\.]{2,6})$', false)]",
        json!([["My-us3r_n4m3"], null, ["john@doe.com", "john", "doe", "com"]]),
    );
    t.one(
        "REGEX_SPLIT",
        "RETURN [REGEX_SPLIT('a1b22c', '[0-9]+'), REGEX_SPLIT('aXbxc', 'x', true)]",
        json!([["a", "b", "c"], ["a", "b", "c"]]),
    );
    t.one(
        "REGEX_REPLACE",
        r"RETURN [REGEX_REPLACE('the quick brown fox', 'the.*fox', 'jumped over'), REGEX_REPLACE('An Avocado', 'a', '_', true), REGEX_REPLACE('2024-01-15', '(\\d+)-(\\d+)-(\\d+)', '$3.$2.$1')]",
        json!(["jumped over", "_n _voc_do", "15.01.2024"]),
    );
    t.one(
        "LIKE function",
        "RETURN [LIKE('cart', 'ca_t'), LIKE('CART', 'ca%', true), LIKE('foo bar baz', '%bar%'), LIKE('CART', 'ca%')]",
        json!([true, true, true, false]),
    );
    t.one(
        "REPEAT / REVERSE",
        "RETURN [REPEAT('foo', 3), REPEAT('foo', 3, '|'), REPEAT('x', 0), REVERSE('foobar'), REVERSE('Äbc')]",
        json!(["foofoofoo", "foo|foo|foo", "", "raboof", "cbÄ"]),
    );
    t.one(
        "STARTS_WITH",
        "RETURN [STARTS_WITH('foobar', 'foo'), STARTS_WITH('foobar', 'baz'), STARTS_WITH('foobar', ['bar', 'foo']), STARTS_WITH('foobar', ['bar', 'baz'])]",
        json!([true, false, true, false]),
    );
    t.one(
        "MD5 / SHA1 / SHA256 / SHA512",
        "RETURN [MD5('foobar'), SHA1('foobar'), SHA256('foobar'), SHA512('foobar')]",
        json!(["3858f62230ac3c915f300c664312c63f", "8843d7f92416211de9ebb963ff4ce28125932878",
               "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2",
               "0a50261ebd1a390fed2bf326f2673c145582a6342d523204973d0219337f81616a8069b012587cf5635f6925f1b56c360230c19b273500ee013e030601bf2425"]),
    );
    t.one(
        "CRC32 / FNV64",
        "RETURN [CRC32('foobar'), FNV64('foobar')]",
        json!(["D5F5C7F", "85944171F73967E8"]),
    );
    t.one(
        "TO_BASE64 / TO_HEX / ENCODE_URI_COMPONENT",
        "RETURN [TO_BASE64('ABC'), TO_HEX('ABC'), ENCODE_URI_COMPONENT('fünf %')]",
        json!(["QUJD", "414243", "f%C3%BCnf%20%25"]),
    );
    t.one(
        "SOUNDEX / LEVENSHTEIN_DISTANCE",
        "RETURN [SOUNDEX('example'), SOUNDEX('ekzampul'), LEVENSHTEIN_DISTANCE('foobar', 'bar'), LEVENSHTEIN_DISTANCE('kitten', 'sitting'), LEVENSHTEIN_DISTANCE('', '')]",
        json!(["E251", "E251", 3, 3, 0]),
    );
    t.one(
        "IPV4_TO_NUMBER / IPV4_FROM_NUMBER / IS_IPV4",
        "RETURN [IPV4_TO_NUMBER('127.0.0.1'), IPV4_FROM_NUMBER(2130706433), IS_IPV4('1.2.3.4'), IS_IPV4('01.2.3.4'), IS_IPV4('1.2.3'), IPV4_TO_NUMBER('x')]",
        json!([2130706433, "127.0.0.1", true, false, false, null]),
    );
    t.one(
        "JSON_STRINGIFY / JSON_PARSE",
        r#"RETURN [JSON_STRINGIFY({a: [1, 'x', null]}), JSON_PARSE('[1, {"a": true}]'), JSON_PARSE('{oops'), JSON_STRINGIFY('s')]"#,
        json!(["{\"a\":[1,\"x\",null]}", [1, {"a": true}], null, "\"s\""]),
    );
    t.one(
        "TO_CHAR",
        "RETURN [TO_CHAR(65), TO_CHAR(228)]",
        json!(["A", "ä"]),
    );
    t.check(
        "UUID is a random version-4 UUID",
        "RETURN [UUID(), UUID()]",
        |rows| {
            let [Value::Array(pair)] = rows else {
                return Err(format!("expected one array, got {rows:?}"));
            };
            let ids: Vec<&str> = pair.iter().filter_map(Value::as_str).collect();
            let shaped = |s: &str| {
                let parts: Vec<&str> = s.split('-').collect();
                parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
                    && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
                    && parts[2].starts_with('4')
            };
            if ids.len() == 2 && ids.iter().all(|s| shaped(s)) && ids[0] != ids[1] {
                Ok(())
            } else {
                Err(format!(
                    "expected two different version-4 UUIDs, got {pair:?}"
                ))
            }
        },
    );
    t.check(
        "RANDOM_TOKEN",
        "RETURN RANDOM_TOKEN(12)",
        |rows| match rows {
            [Value::String(s)] if s.len() == 12 && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Ok(())
            }
            _ => Err(format!("expected 12 letters and digits, got {rows:?}")),
        },
    );
}

fn numeric_function_cases(t: &mut Table) {
    t.group("numeric functions");
    t.one(
        "ROUND rounds halves up, towards +infinity (ArangoDB's examples)",
        "RETURN [ROUND(2.5), ROUND(2.49), ROUND(-2.5), ROUND(-2.51), ROUND(3)]",
        json!([3, 2, -2, -3, 3]),
    );
    t.one(
        "ABS / CEIL / FLOOR",
        "RETURN [ABS(-5.5), ABS(3), ABS('-2'), CEIL(2.1), CEIL(-2.1), FLOOR(2.9), FLOOR(-2.1)]",
        json!([5.5, 3, 2, 3, -2, 2, -3]),
    );
    t.one(
        "SQRT / POW / EXP / LOG",
        "RETURN [SQRT(16), SQRT(2.25), POW(2, 10), POW(2, -1), EXP(0), EXP2(3), LOG(1), LOG2(8), LOG10(1000)]",
        json!([4, 1.5, 1024, 0.5, 1, 8, 0, 3, 3]),
    );
    t.one(
        "results that are not numbers become null",
        "RETURN [SQRT(-1), LOG(0), LOG(-1), POW(0, -1)]",
        json!([null, null, null, null]),
    );
    t.one(
        "trigonometry",
        "RETURN [SIN(0), COS(0), TAN(0), ASIN(1) * 2 == PI(), ACOS(1), ATAN(0), ATAN2(0, 1), RADIANS(180) == PI(), DEGREES(PI())]",
        json!([0, 1, 0, true, 0, 0, 0, true, 180]),
    );
    t.one("PI", "RETURN PI()", json!(std::f64::consts::PI));
    t.one(
        "RANGE",
        "RETURN [RANGE(1, 4), RANGE(1, 4, 2), RANGE(1, 4, 3), RANGE(1.5, 2.5), RANGE(1.5, 2.5, 1), RANGE(1.5, 2.5, 0.5), RANGE(-0.75, 1.1, 0.5)]",
        json!([[1, 2, 3, 4], [1, 3], [1, 4], [1, 2], [1.5, 2.5], [1.5, 2, 2.5], [-0.75, -0.25, 0.25, 0.75]]),
    );
    t.one(
        "SUM / PRODUCT",
        "RETURN [SUM([1, 2, 3.5]), SUM([]), PRODUCT([1, 2, 3, 4]), PRODUCT([])]",
        json!([6.5, 0, 24, 1]),
    );
    t.one(
        "AVERAGE / AVG / MEDIAN",
        "RETURN [AVERAGE([1, 2, 3, 4]), AVG([5, 7]), MEDIAN([1, 3, 2]), MEDIAN([4, 1, 3, 2]), MEDIAN([])]",
        json!([2.5, 6, 2, 2.5, null]),
    );
    t.one(
        "MIN / MAX",
        "RETURN [MIN([5, 2, 9]), MAX([5, 2, 9]), MIN(['b', 'a']), MAX([1, '1']), MIN([]), MAX([[], {}])]",
        json!([2, 9, "a", "1", null, {}]),
    );
    t.one(
        "PERCENTILE",
        "RETURN [PERCENTILE([1, 2, 3, 4], 50), PERCENTILE([1, 2, 3, 4], 50, 'rank'), PERCENTILE([1, 2, 3, 4], 50, 'interpolation')]",
        json!([2, 2, 2.5]),
    );
    t.one(
        "VARIANCE / STDDEV (ArangoDB's examples)",
        "RETURN [VARIANCE_POPULATION([1, 3, 6, 5, 2]), VARIANCE_SAMPLE([1, 3, 6, 5, 2]), VARIANCE([1, 3, 6, 5, 2]), STDDEV_POPULATION([1, 3, 6, 5, 2]), STDDEV_SAMPLE([1, 3, 6, 5, 2]), STDDEV([1, 3, 6, 5, 2])]",
        json!([3.4400000000000004, 4.300000000000001, 3.4400000000000004, 1.8547236990991407, 2.0736441353327724, 1.8547236990991407]),
    );
    t.one(
        "vector functions",
        "RETURN [COSINE_SIMILARITY([0, 1], [1, 0]), COSINE_SIMILARITY([1, 1], [2, 2]), L1_DISTANCE([1, 1], [4, 5]), L2_DISTANCE([1, 1], [4, 5])]",
        json!([0, 1, 7, 5]),
    );
    t.check(
        "RAND is in [0, 1)",
        "RETURN [RAND(), RAND(), RANDOM()]",
        |rows| {
            let ok = rows.len() == 1
                && rows[0].as_array().is_some_and(|xs| {
                    xs.len() == 3
                        && xs
                            .iter()
                            .all(|x| x.as_f64().is_some_and(|f| (0.0..1.0).contains(&f)))
                });
            ok.then_some(())
                .ok_or_else(|| format!("expected three numbers in [0, 1), got {rows:?}"))
        },
    );
    t.one(
        "on documents: price statistics",
        "RETURN [MIN(products[*].price), MAX(products[*].price), SUM(products[*].stock)]",
        json!([1.25, 999.99, 1574]),
    );
}

fn array_function_cases(t: &mut Table) {
    t.group("array functions");
    t.one(
        "FIRST / LAST / NTH",
        "RETURN [FIRST([1, 2]), LAST([1, 2]), NTH(['foo', 'bar', 'baz'], 2), NTH(['foo', 'bar', 'baz'], 3), NTH(['foo', 'bar', 'baz'], -1)]",
        json!([1, 2, "baz", null, null]),
    );
    t.one(
        "PUSH / POP / APPEND / UNSHIFT / SHIFT",
        "RETURN [PUSH([1, 2, 3], 4), PUSH([1, 2, 2, 3], 2, true), POP([1, 2, 3, 4]), POP([1]), APPEND([1, 2, 3], [5, 6, 9]), APPEND([1, 2, 3], [3, 4, 5, 2, 9], true), UNSHIFT([1, 2, 3], 4), UNSHIFT([1, 2, 3], 2, true), SHIFT([1, 2, 3, 4]), SHIFT([])]",
        json!([[1, 2, 3, 4], [1, 2, 2, 3], [1, 2, 3], [], [1, 2, 3, 5, 6, 9], [1, 2, 3, 4, 5, 9], [4, 1, 2, 3], [1, 2, 3], [2, 3, 4], []]),
    );
    t.one(
        "UNIQUE / SORTED / SORTED_UNIQUE",
        "RETURN [SORTED(UNIQUE([1, 2, 2, 3, 1, 1.0])), SORTED([8, 4, 2, 10, 6]), SORTED_UNIQUE([8, 4, 2, 10, 6, 2, 8, 6, 4]), SORTED(['b', null, 1, [], false, {}])]",
        json!([[1, 2, 3], [2, 4, 6, 8, 10], [2, 4, 6, 8, 10], [null, false, 1, "b", [], {}]]),
    );
    t.one(
        "FLATTEN",
        "RETURN [FLATTEN([1, 2, [3, 4], 5, [6, 7], [8, [9, 10]]]), FLATTEN([1, 2, [3, 4], 5, [6, 7], [8, [9, 10]]], 2), FLATTEN([1, [2, [3, [4]]]])]",
        json!([[1, 2, 3, 4, 5, 6, 7, 8, [9, 10]], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 2, [3, [4]]]]),
    );
    t.one(
        "SLICE",
        "LET a = [1, 2, 3, 4, 5] RETURN [SLICE(a, 0, 1), SLICE(a, 1, 2), SLICE(a, 3), SLICE(a, 1, -1), SLICE(a, 0, -2), SLICE(a, -3, 2), SLICE(a, 10)]",
        json!([[1], [2, 3], [4, 5], [2, 3, 4], [1, 2, 3], [3, 4], []]),
    );
    t.one(
        "UNION / UNION_DISTINCT",
        "RETURN [UNION([1, 2, 3], [1, 2]), SORTED(UNION_DISTINCT([1, 2, 3], [1, 2], [4]))]",
        json!([[1, 2, 3, 1, 2], [1, 2, 3, 4]]),
    );
    t.one(
        "INTERSECTION / MINUS / OUTERSECTION",
        "RETURN [SORTED(INTERSECTION([1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [3, 4, 5, 6, 7])), SORTED(MINUS([1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8])), SORTED(OUTERSECTION([1, 2, 3], [2, 3, 4], [3, 4, 5])), INTERSECTION([1], [2])]",
        json!([[3, 4, 5], [1, 2], [1, 5], []]),
    );
    t.one(
        "POSITION / CONTAINS_ARRAY",
        "RETURN [POSITION([2, 4, 6, 8], 4), POSITION([2, 4, 6, 8], 4, true), POSITION([2, 4, 6, 8], 5, true), CONTAINS_ARRAY([2, 4], 2), CONTAINS_ARRAY([2, 4], 3)]",
        json!([true, 1, -1, true, false]),
    );
    t.one(
        "REMOVE_VALUE / REMOVE_VALUES / REMOVE_NTH / REPLACE_NTH",
        "RETURN [REMOVE_VALUE(['a', 'b', 'b', 'a', 'c'], 'a'), REMOVE_VALUE(['a', 'b', 'b', 'a', 'c'], 'a', 1), REMOVE_VALUES(['a', 'a', 'b', 'c', 'd', 'e', 'f'], ['a', 'f', 'd']), REMOVE_NTH(['a', 'b', 'c', 'd', 'e'], 1), REMOVE_NTH(['a', 'b', 'c', 'd', 'e'], -2), REPLACE_NTH(['a', 'b', 'c'], 1, 'z'), REPLACE_NTH(['a', 'b', 'c'], 5, 'z', 'y')]",
        json!([["b", "b", "c"], ["b", "b", "a", "c"], ["b", "c", "e"], ["a", "c", "d", "e"], ["a", "b", "c", "e"], ["a", "z", "c"], ["a", "b", "c", "y", "y", "z"]]),
    );
    t.one(
        "COUNT_DISTINCT / COUNT_UNIQUE",
        "RETURN [COUNT_DISTINCT([1, 1, 2, '2', 1.0]), COUNT_UNIQUE(['a', 'b', 'a'])]",
        json!([3, 2]),
    );
    t.one(
        "JACCARD / INTERLEAVE",
        "RETURN [JACCARD([1, 2, 3, 4], [3, 4, 5, 6]), JACCARD([1, 1, 2, 2, 2, 3], [2, 2, 3, 4]), INTERLEAVE([1, 1], [2, 2], [3, 3]), INTERLEAVE([1], [2, 2], [3, 3, 3])]",
        json!([0.3333333333333333, 0.5, [1, 2, 3, 1, 2, 3], [1, 2, 3, 2, 3, 3]]),
    );
    t.one(
        "REVERSE of an array",
        "RETURN REVERSE([1, [2], 'x'])",
        json!(["x", [2], 1]),
    );
    t.one(
        "array functions on non-arrays return null",
        "RETURN [FIRST('abc'), LAST(1), SORTED('x'), FLATTEN(1)]",
        json!([null, null, null, null]),
    );
}

fn object_function_cases(t: &mut Table) {
    t.group("object functions");
    t.one(
        "ATTRIBUTES / KEYS",
        "LET doc = {foo: 'bar', _key: '123', _custom: 'yes'} RETURN [ATTRIBUTES(doc), ATTRIBUTES(doc, true), ATTRIBUTES(doc, false, true), KEYS({b: 1, a: 2}, false, true)]",
        json!([["foo", "_key", "_custom"], ["foo"], ["_custom", "_key", "foo"], ["a", "b"]]),
    );
    t.one(
        "VALUES / ENTRIES",
        "LET doc = {_id: 'users/jane', name: 'Jane', age: 35} RETURN [VALUES(doc), VALUES(doc, true), ENTRIES({a: 1, b: [2]})]",
        json!([["users/jane", "Jane", 35], ["Jane", 35], [["a", 1], ["b", [2]]]]),
    );
    t.one(
        "HAS",
        "RETURN [HAS({name: 'Jane'}, 'name'), HAS({name: null}, 'name'), HAS({}, 'x'), HAS({a: {b: 1}}, 'b')]",
        json!([true, true, false, false]),
    );
    t.one(
        "KEEP / UNSET",
        "LET doc = {a: 1, b: 2, c: 3} RETURN [KEEP(doc, 'a', 'c'), KEEP(doc, ['b']), KEEP(doc, 'x'), UNSET(doc, 'b'), UNSET(doc, ['a', 'c']), UNSET(doc, 'x')]",
        json!([{"a": 1, "c": 3}, {"b": 2}, {}, {"a": 1, "c": 3}, {"b": 2}, {"a": 1, "b": 2, "c": 3}]),
    );
    t.one(
        "UNSET_RECURSIVE / KEEP_RECURSIVE",
        "LET doc = {a: 1, b: {a: 2, c: 3, d: {a: 5, e: 6}}} RETURN [UNSET_RECURSIVE(doc, 'a'), KEEP_RECURSIVE(doc, 'b', 'd')]",
        json!([{"b": {"c": 3, "d": {"e": 6}}}, {"b": {"d": {}}}]),
    );
    t.one(
        "MERGE is shallow; later values win",
        "RETURN [MERGE({a: 1}, {a: 2, b: 3}), MERGE({user1: {name: 'Jane'}}, {user2: {name: 'Tom'}}), MERGE([{a: 1}, {b: 2}, {a: 3}]), MERGE({a: {x: 1}}, {a: {y: 2}})]",
        json!([{"a": 2, "b": 3}, {"user1": {"name": "Jane"}, "user2": {"name": "Tom"}}, {"a": 3, "b": 2}, {"a": {"y": 2}}]),
    );
    t.one(
        "MERGE_RECURSIVE",
        "RETURN MERGE_RECURSIVE({'user-1': {name: 'Jane', livesIn: {city: 'LA'}}}, {'user-1': {age: 42, livesIn: {state: 'CA'}}})",
        json!({"user-1": {"name": "Jane", "livesIn": {"city": "LA", "state": "CA"}, "age": 42}}),
    );
    t.one(
        "ZIP",
        "RETURN [ZIP(['name', 'active', 'hobbies'], ['some user', true, ['swimming', 'riding']]), ZIP(['a'], [1, 2])]",
        json!([{"name": "some user", "active": true, "hobbies": ["swimming", "riding"]}, null]),
    );
    t.one(
        "MATCHES",
        "RETURN [MATCHES({a: 1, b: 2}, {a: 1}), MATCHES({a: 1}, {a: 2}), MATCHES({test: 1}, [{test: 1, foo: 'bar'}, {foo: 1}, {test: 1}], true)]",
        json!([true, false, 2]),
    );
    t.one(
        "TRANSLATE / VALUE",
        "RETURN [TRANSLATE('FR', {US: 'United States', FR: 'France'}), TRANSLATE(42, {foo: 'bar'}, 'not found'), TRANSLATE('x', {}), VALUE({a: [1, {b: 2}]}, ['a', 1, 'b'])]",
        json!(["France", "not found", "x", 2]),
    );
    t.one(
        "PARSE_IDENTIFIER / PARSE_COLLECTION / PARSE_KEY / IS_SAME_COLLECTION",
        "RETURN [PARSE_IDENTIFIER('users/u01'), PARSE_COLLECTION('users/u01'), PARSE_KEY('users/u01'), IS_SAME_COLLECTION('users', 'users/u01'), IS_SAME_COLLECTION('users', 'orders/o01')]",
        json!([{"collection": "users", "key": "u01"}, "users", "u01", true, false]),
    );
    t.rows(
        "on documents: KEEP and MERGE",
        "FOR p IN products FILTER p._key == 'p4' RETURN MERGE(KEEP(p, 'name', 'price'), {inStock: p.stock > 0})",
        json!([{"name": "Chair", "price": 120, "inStock": false}]),
    );
}

fn type_function_cases(t: &mut Table) {
    t.group("type functions");
    t.one(
        "TO_BOOL",
        "RETURN [TO_BOOL(null), TO_BOOL(0), TO_BOOL(-1), TO_BOOL(''), TO_BOOL(' '), TO_BOOL('0'), TO_BOOL([]), TO_BOOL({})]",
        json!([false, false, true, false, true, true, true, true]),
    );
    t.one(
        "TO_NUMBER",
        "RETURN [TO_NUMBER(null), TO_NUMBER(false), TO_NUMBER(true), TO_NUMBER('12.5'), TO_NUMBER('  7 '), TO_NUMBER('-1e2'), TO_NUMBER('abc'), TO_NUMBER('1a'), TO_NUMBER([]), TO_NUMBER([4]), TO_NUMBER(['5']), TO_NUMBER([4, 5]), TO_NUMBER({})]",
        json!([0, 0, 1, 12.5, 7, -100, 0, 0, 0, 4, 5, 0, 0]),
    );
    t.one(
        "TO_STRING",
        "RETURN [TO_STRING(null), TO_STRING(true), TO_STRING(false), TO_STRING(123), TO_STRING(1.5), TO_STRING(-0.25), TO_STRING([1, 'a']), TO_STRING({a: 1})]",
        json!(["", "true", "false", "123", "1.5", "-0.25", "[1,\"a\"]", "{\"a\":1}"]),
    );
    t.one(
        "TO_ARRAY / TO_LIST",
        "RETURN [TO_ARRAY(null), TO_ARRAY(false), TO_ARRAY(5), TO_ARRAY('x'), TO_ARRAY([1]), TO_ARRAY({a: 1, b: 2}), TO_LIST(2)]",
        json!([[], [false], [5], ["x"], [1], [1, 2], [2]]),
    );
    t.one(
        "IS_* on matching values",
        "RETURN [IS_NULL(null), IS_BOOL(false), IS_NUMBER(1.5), IS_STRING('x'), IS_ARRAY([]), IS_LIST([]), IS_OBJECT({}), IS_DOCUMENT({})]",
        json!([true, true, true, true, true, true, true, true]),
    );
    t.one(
        "IS_* on other values",
        "RETURN [IS_NULL(0), IS_NULL(''), IS_BOOL(0), IS_NUMBER('1'), IS_STRING(1), IS_ARRAY({}), IS_OBJECT([]), IS_NULL(false)]",
        json!([false, false, false, false, false, false, false, false]),
    );
    t.one(
        "TYPENAME",
        "RETURN [TYPENAME(null), TYPENAME(true), TYPENAME(1), TYPENAME(1.5), TYPENAME('1'), TYPENAME([]), TYPENAME({})]",
        json!(["null", "bool", "number", "number", "string", "array", "object"]),
    );
    t.one(
        "IS_KEY / IS_DATESTRING (partial dates and well-formed impossible dates count, as ArangoDB documents)",
        "RETURN [IS_KEY('abc'), IS_KEY('a/b'), IS_KEY(''), IS_KEY(1), IS_DATESTRING('2024-01-15'), IS_DATESTRING('2024-01-15T10:00:00Z'), IS_DATESTRING('2015'), IS_DATESTRING('2015-02-31'), IS_DATESTRING('foo'), IS_DATESTRING(1)]",
        json!([true, false, false, false, true, true, true, true, false, false]),
    );
    t.rows(
        "TYPENAME on documents",
        "FOR u IN users FILTER u._key IN ['u04', 'u06', 'u13', 'u01'] SORT u._key RETURN TYPENAME(u.age)",
        json!(["number", "null", "null", "string"]),
    );
}

fn date_function_cases(t: &mut Table) {
    t.group("date functions");
    t.one(
        "DATE_ISO8601",
        "RETURN [DATE_ISO8601(0), DATE_ISO8601(1705312800000), DATE_ISO8601(2024, 1, 15), DATE_ISO8601(2024, 1, 15, 10, 30, 5, 250), DATE_ISO8601('2024-01-15')]",
        json!(["1970-01-01T00:00:00.000Z", "2024-01-15T10:00:00.000Z", "2024-01-15T00:00:00.000Z", "2024-01-15T10:30:05.250Z", "2024-01-15T00:00:00.000Z"]),
    );
    t.one(
        "DATE_TIMESTAMP",
        "RETURN [DATE_TIMESTAMP('2024-01-15T10:00:00Z'), DATE_TIMESTAMP(2024, 1, 15), DATE_TIMESTAMP('2024-01-15T10:00:00.5Z'), DATE_TIMESTAMP('2024-01-15T12:00:00+02:00'), DATE_TIMESTAMP('not a date')]",
        json!([1705312800000_i64, 1705276800000_i64, 1705312800500_i64, 1705312800000_i64, null]),
    );
    t.one(
        "date parts",
        "LET d = '2024-03-05T09:15:30.123Z' RETURN [DATE_YEAR(d), DATE_MONTH(d), DATE_DAY(d), DATE_HOUR(d), DATE_MINUTE(d), DATE_SECOND(d), DATE_MILLISECOND(d)]",
        json!([2024, 3, 5, 9, 15, 30, 123]),
    );
    t.one(
        "calendar functions",
        "RETURN [DATE_DAYOFWEEK('2024-01-15'), DATE_DAYOFWEEK('2024-01-14'), DATE_DAYOFYEAR('2024-03-05'), DATE_ISOWEEK('2024-01-15'), DATE_LEAPYEAR('2023-06-01'), DATE_LEAPYEAR('2024-06-01'), DATE_QUARTER('2024-08-30'), DATE_DAYS_IN_MONTH('2024-02-10'), DATE_DAYS_IN_MONTH('2023-02-10')]",
        json!([1, 0, 65, 3, false, true, 3, 29, 28]),
    );
    t.one(
        "DATE_ADD / DATE_SUBTRACT",
        "RETURN [DATE_ADD('2024-01-15T00:00:00Z', 2, 'days'), DATE_ADD('2024-01-15T23:00:00Z', 3, 'hours'), DATE_SUBTRACT('2024-03-01T00:00:00Z', 1, 'day'), DATE_ADD('2024-01-15T00:00:00Z', 'P1W'), DATE_ADD(0, 1500, 'milliseconds')]",
        json!(["2024-01-17T00:00:00.000Z", "2024-01-16T02:00:00.000Z", "2024-02-29T00:00:00.000Z", "2024-01-22T00:00:00.000Z", "1970-01-01T00:00:01.500Z"]),
    );
    t.one(
        "DATE_DIFF / DATE_COMPARE",
        "RETURN [DATE_DIFF('2024-01-01T00:00:00Z', '2024-01-31T00:00:00Z', 'days'), DATE_DIFF('2024-01-01T00:00:00Z', '2024-01-01T12:00:00Z', 'hours'), DATE_DIFF('2024-01-31T00:00:00Z', '2024-01-01T00:00:00Z', 'd'), DATE_COMPARE('2024-01-15T10:00:00Z', '2024-01-15T23:59:00Z', 'years', 'days'), DATE_COMPARE('2024-01-15T10:00:00Z', '2024-01-15T23:59:00Z', 'years', 'hours')]",
        json!([30, 12, -30, true, false]),
    );
    t.one(
        "DATE_FORMAT",
        "RETURN [DATE_FORMAT('2024-03-05T09:15:30Z', '%yyyy-%mm-%dd %hh:%ii:%ss'), DATE_FORMAT('2024-03-05T09:15:30Z', '%wwww, %mmm %d'), DATE_FORMAT('2024-03-05T09:15:30Z', '%%')]",
        json!(["2024-03-05 09:15:30", "Tuesday, Mar 5", "%"]),
    );
    t.one(
        "DATE_TRUNC / DATE_ROUND",
        "RETURN [DATE_TRUNC('2024-03-05T09:15:30.123Z', 'month'), DATE_TRUNC('2024-03-05T09:15:30.123Z', 'day'), DATE_ROUND('2024-03-05T09:17:30Z', 15, 'minutes')]",
        json!(["2024-03-01T00:00:00.000Z", "2024-03-05T00:00:00.000Z", "2024-03-05T09:15:00.000Z"]),
    );
    t.check(
        "DATE_NOW is the current time in milliseconds",
        "RETURN DATE_NOW()",
        |rows| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as f64)
                .unwrap_or(0.0);
            match rows {
                [v] if v.as_f64().is_some_and(|t| (t - now).abs() < 600_000.0) => Ok(()),
                _ => Err(format!("expected about {now}, got {rows:?}")),
            }
        },
    );
    t.rows(
        "on documents",
        "FOR o IN orders FILTER DATE_MONTH(o.created) == 4 SORT o._key RETURN [o._key, DATE_DAYOFWEEK(o.created)]",
        json!([["o06", 2], ["o07", 4]]),
    );
}

fn misc_function_cases(t: &mut Table) {
    t.group("misc functions");
    t.one(
        "DOCUMENT by id, by collection and key, and lists",
        "RETURN [DOCUMENT('users/u01').name, DOCUMENT('users', 'u02').name, DOCUMENT(['users/u01', 'users/nope', 'products/p1'])[*]._key, DOCUMENT('users', ['u03', 'u01'])[*].name]",
        json!(["Alice", "Bob", ["u01", "p1"], ["Carol", "Alice"]]),
    );
    t.one(
        "DOCUMENT of something missing is null",
        "RETURN [DOCUMENT('users/nope'), DOCUMENT('nocoll/x'), DOCUMENT('users', 'bad key!'), DOCUMENT(42)]",
        json!([null, null, null, null]),
    );
    t.rows(
        "DOCUMENT as a join",
        "FOR o IN orders FILTER o._key IN ['o03', 'o14'] SORT o._key RETURN DOCUMENT('users', o.user).name",
        json!(["Bob", null]),
    );
    t.one(
        "NOT_NULL / FIRST_LIST / FIRST_DOCUMENT",
        "RETURN [NOT_NULL(null, 'a'), NOT_NULL(null), FIRST_LIST(null, 1, [1]), FIRST_DOCUMENT(null, 1, [], {a: 1})]",
        json!(["a", null, [1], {"a": 1}]),
    );
    t.one(
        "MIN_MATCH / IN_RANGE",
        "RETURN [MIN_MATCH(1 == 1, 2 == 3, 3 == 3, 2), MIN_MATCH(1 == 2, 2 == 3, 3 == 3, 2), IN_RANGE(4, 1, 5, true, true), IN_RANGE(5, 1, 5, true, false), IN_RANGE('b', 'a', 'c', true, true)]",
        json!([true, false, true, false, true]),
    );
    t.one(
        "CALL / APPLY",
        "RETURN [CALL('SUBSTRING', 'this is a test', 0, 4), APPLY('SUBSTRING', ['this is a test', 0, 7])]",
        json!(["this", "this is"]),
    );
    t.one(
        "PASSTHRU / NOOPT / NOEVAL",
        "RETURN [PASSTHRU(5), NOOPT('x'), NOEVAL(1 + 1)]",
        json!([5, "x", 2]),
    );
    t.one(
        "WARN passes through a true condition",
        "RETURN [WARN(true, 'never'), ASSERT(true, 'never')]",
        json!([true, true]),
    );
    t.check(
        "HASH is a number",
        "RETURN [HASH('a'), HASH('a'), HASH('b')]",
        |rows| match rows {
            [Value::Array(h)]
                if h.len() == 3
                    && h.iter().all(Value::is_number)
                    && h[0] == h[1]
                    && h[0] != h[2] =>
            {
                Ok(())
            }
            _ => Err(format!(
                "expected equal numbers for equal inputs, got {rows:?}"
            )),
        },
    );
    t.check(
        "VERSION is a string",
        "RETURN VERSION()",
        |rows| match rows {
            [Value::String(s)] if !s.is_empty() => Ok(()),
            _ => Err(format!("expected a version string, got {rows:?}")),
        },
    );
    t.one(
        "CHECK_DOCUMENT",
        "RETURN [CHECK_DOCUMENT({a: 1}), CHECK_DOCUMENT(1)]",
        json!([true, false]),
    );
    t.one(
        "COLLECTION_COUNT",
        "RETURN COLLECTION_COUNT('users')",
        json!(30),
    );
    t.one(
        "CURRENT_DATABASE",
        "RETURN CURRENT_DATABASE()",
        json!("_system"),
    );
    t.one("CURRENT_USER", "RETURN CURRENT_USER()", json!("root"));
    t.check(
        "COLLECTIONS lists the collections",
        "RETURN COLLECTIONS()[*].name",
        |rows| match rows {
            [Value::Array(names)]
                if ["users", "orders", "products", "mixed"]
                    .iter()
                    .all(|n| names.contains(&json!(n))) =>
            {
                Ok(())
            }
            _ => Err(format!(
                "expected users, orders, products and mixed, got {rows:?}"
            )),
        },
    );
}

fn documented_example_cases(t: &mut Table) {
    t.group("ArangoDB documentation examples");
    t.one(
        "LIKE",
        "RETURN [LIKE('cart', 'ca_t'), LIKE('carrot', 'ca_t'), LIKE('carrot', 'ca%t'), LIKE('foo bar baz', 'bar'), LIKE('foo bar baz', '%bar%'), LIKE('bar', '%bar%'), LIKE('FoO bAr BaZ', 'fOo%bAz'), LIKE('FoO bAr BaZ', 'fOo%bAz', true)]",
        json!([true, false, true, false, true, true, false, true]),
    );
    t.one(
        "REGEX_SPLIT",
        r#"RETURN [REGEX_SPLIT("hypertext language, programming", "[\\s, ]+"), REGEX_SPLIT("Capture the article", "(the)"), REGEX_SPLIT("Don't capture the article", "the"), REGEX_SPLIT("cA,Bc,A,BcA,BcA,Bc", "a,b", true, 3)]"#,
        json!([["hypertext", "language", "programming"], ["Capture ", "the", " article"], ["Don't capture ", " article"], ["c", "c,", "c"]]),
    );
    t.one(
        "REGEX_TEST across lines",
        r#"RETURN REGEX_TEST("the\nquick\nbrown\nfox", "^the(\n[a-w]+)+\nfox$")"#,
        json!(true),
    );
    t.one(
        "FIND_FIRST / FIND_LAST with an empty search",
        "RETURN [FIND_FIRST('foobarbaz', ''), FIND_FIRST('foobarbaz', '', 4), FIND_LAST('foobarbaz', ''), FIND_LAST('foobarbaz', '', 0, 4)]",
        json!([0, 4, 9, 5]),
    );
    t.one(
        "IS_IPV4 / IPV4_FROM_NUMBER",
        "RETURN [IS_IPV4('127.0.0.1'), IS_IPV4('8.8.8.8'), IS_IPV4('008.008.008.008'), IS_IPV4('12345.2.3.4'), IS_IPV4('12.34'), IS_IPV4(8888), IPV4_FROM_NUMBER(0), IPV4_FROM_NUMBER(134744072), IPV4_FROM_NUMBER(3232235521), IPV4_FROM_NUMBER(-23)]",
        json!([true, true, false, false, false, false, "0.0.0.0", "8.8.8.8", "192.168.0.1", null]),
    );
    t.one(
        "JSON_STRINGIFY / JSON_PARSE",
        r#"RETURN [JSON_STRINGIFY(true), JSON_STRINGIFY("abc"), JSON_STRINGIFY([1, {'2': .5}]), JSON_PARSE("123"), JSON_PARSE("[ true, false, null, -0.5 ]"), JSON_PARSE('{"a": 1}'), JSON_PARSE('"abc"'), JSON_PARSE("abc")]"#,
        json!(["true", "\"abc\"", "[1,{\"2\":0.5}]", 123, [true, false, null, -0.5], {"a": 1}, "abc", null]),
    );
    t.one(
        "LEVENSHTEIN_DISTANCE / CHAR_LENGTH / LENGTH",
        "RETURN [LEVENSHTEIN_DISTANCE(' ', ''), LEVENSHTEIN_DISTANCE('der mötör trötet', 'der trötet'), CHAR_LENGTH({foo: 'bar'}), LENGTH('电脑坏了'), CHAR_LENGTH('foo')]",
        json!([1, 6, 13, 4, 3]),
    );
    t.one(
        "CONCAT / CONCAT_SEPARATOR with mixed types",
        "RETURN [CONCAT(null, false, 0, true, ''), CONCAT([5, 6], {foo: 'bar'}), CONCAT([null, false, 0, true, '']), CONCAT_SEPARATOR(', ', null, false, 0, true, ''), CONCAT_SEPARATOR(', ', [5, 6], {foo: 'bar'}), CONCAT_SEPARATOR(', ', [[5, 6], {foo: 'bar'}])]",
        json!(["false0true", "[5,6]{\"foo\":\"bar\"}", "false0true", "false, 0, true, ", "[5,6], {\"foo\":\"bar\"}", "[5,6], {\"foo\":\"bar\"}"]),
    );
    t.one(
        "LTRIM / RANDOM_TOKEN(0)",
        "RETURN [LTRIM('foo bar'), LTRIM('  foo bar  '), RANDOM_TOKEN(0)]",
        json!(["foo bar", "foo bar  ", ""]),
    );
}

fn error_cases(t: &mut Table) {
    use ErrorCode::ErrQuery;
    t.group("errors");
    t.error(
        "syntax error: line, column and the offending text underlined",
        "FOR u IN users\n  FILTER u.age >\n  RETURN u",
        ErrQuery,
        &[
            "unexpected",
            "RETURN",
            "(line 3, column 3)",
            "\n    RETURN u\n    ^^^^^^",
        ],
    );
    t.error(
        "syntax error at the end of the text",
        "RETURN [1, 2",
        ErrQuery,
        &["line 1, column 13", "^"],
    );
    t.error(
        "unterminated string",
        "RETURN 'abc",
        ErrQuery,
        &["unterminated", "line 1, column 8"],
    );
    t.error(
        "= instead of ==",
        "FOR u IN users FILTER u.age = 3 RETURN u",
        ErrQuery,
        &["use == to compare", "line 1, column 29"],
    );
    t.error("empty query", "  ", ErrQuery, &["empty query"]);
    t.error(
        "query without RETURN or a modification",
        "FOR u IN users FILTER u.age > 3",
        ErrQuery,
        &["must end with RETURN"],
    );
    t.error(
        "operations after RETURN",
        "FOR x IN [1] RETURN x FILTER x > 0",
        ErrQuery,
        &["RETURN must be the last operation", "FILTER"],
    );
    t.error(
        "reserved word as a variable name",
        "LET for = 1 RETURN 1",
        ErrQuery,
        &["reserved word", "line 1, column 5"],
    );
    t.error(
        "unknown function, named",
        "RETURN NOPE_FN(1)",
        ErrQuery,
        &["unknown function 'NOPE_FN()'", "line 1, column 8"],
    );
    t.error(
        "regression: unknown collection in FOR is ERR_QUERY (was ERR_NOT_FOUND), named",
        "FOR x IN no_such_coll RETURN x",
        ErrQuery,
        &["no_such_coll", "not found", "line 1, column 10"],
    );
    t.error(
        "unknown collection or variable in an expression, named",
        "RETURN LENGTH(no_such_coll)",
        ErrQuery,
        &["no_such_coll", "line 1, column 15"],
    );
    t.error_b(
        "regression: unknown collection through @@ in an expression is ERR_QUERY, named",
        "RETURN LENGTH(@@c)",
        json!({"@c": "nope_coll"}),
        ErrQuery,
        &["nope_coll", "not found"],
    );
    t.error_b(
        "unknown collection through @@, named",
        "FOR x IN @@c RETURN x",
        json!({"@c": "nope_coll"}),
        ErrQuery,
        &["nope_coll", "not found"],
    );
    t.error(
        "missing bind parameter, named",
        "RETURN @missing",
        ErrQuery,
        &["bind parameter 'missing' is missing", "line 1, column 8"],
    );
    t.error(
        "missing collection bind parameter, named",
        "FOR x IN @@coll RETURN x",
        ErrQuery,
        &["'@coll' is missing"],
    );
    t.error_b(
        "unused bind parameter, named",
        "RETURN 1",
        json!({"extra": 1}),
        ErrQuery,
        &["'extra'", "not used"],
    );
    t.error_b(
        "collection bind parameter that is not a string",
        "FOR x IN @@c RETURN x",
        json!({"@c": 5}),
        ErrQuery,
        &["@@c", "collection name"],
    );
    t.error(
        "wrong number of arguments",
        "RETURN LENGTH(1, 2)",
        ErrQuery,
        &["LENGTH() takes 1 argument, got 2", "line 1, column 8"],
    );
    t.error(
        "too few arguments",
        "RETURN CONCAT_SEPARATOR(',')",
        ErrQuery,
        &["CONCAT_SEPARATOR() takes at least 2 arguments, got 1"],
    );
    t.error(
        "LIMIT with a negative count",
        "FOR u IN users LIMIT -1 RETURN u",
        ErrQuery,
        &["LIMIT", "non-negative"],
    );
    t.error(
        "LIMIT with a negative offset",
        "FOR u IN users LIMIT -2, 1 RETURN u",
        ErrQuery,
        &["LIMIT", "offset", "non-negative"],
    );
    t.error(
        "FOR over a number",
        "FOR x IN 42 RETURN x",
        ErrQuery,
        &["FOR needs a collection or an array", "number"],
    );
    t.error(
        "FOR over an object",
        "LET o = {a: 1} FOR x IN o RETURN x",
        ErrQuery,
        &["FOR needs a collection or an array", "object"],
    );
    t.error(
        "unknown variable",
        "RETURN x + 1",
        ErrQuery,
        &["'x'", "line 1, column 8"],
    );
    t.error(
        "variable assigned twice",
        "LET a = 1 LET a = 2 RETURN a",
        ErrQuery,
        &["'a'", "assigned again"],
    );
    t.error(
        "loop variable is gone after COLLECT",
        "FOR u IN users COLLECT c = u.city RETURN u",
        ErrQuery,
        &["'u'"],
    );
    t.error(
        "RETURN DISTINCT outside a loop",
        "RETURN DISTINCT 1",
        ErrQuery,
        &["DISTINCT", "FOR"],
    );
    t.error(
        "AGGREGATE with a function that does not aggregate",
        "FOR u IN users COLLECT AGGREGATE n = UPPER(u.name) RETURN n",
        ErrQuery,
        &["UPPER()", "AGGREGATE"],
    );
    t.error(
        "power operator",
        "RETURN 2 ** 3",
        ErrQuery,
        &["'**'", "POW"],
    );
    t.error(
        "a range too large",
        "RETURN LENGTH(1..100000000)",
        ErrQuery,
        &["range", "limit"],
    );
    t.error(
        "FAIL() fails the query with its message",
        "RETURN FAIL('custom failure')",
        ErrQuery,
        &["custom failure"],
    );
    t.error(
        "ASSERT() with a false condition",
        "FOR x IN [1, 2] RETURN ASSERT(x < 2, 'x must be small')",
        ErrQuery,
        &["x must be small"],
    );
    t.error(
        "invalid regular expression in =~",
        "RETURN 'a' =~ '('",
        ErrQuery,
        &["invalid regular expression", "'('"],
    );

    t.group("unsupported");
    t.error(
        "graph traversals",
        "FOR v, e IN 1..2 OUTBOUND 'users/u01' knows RETURN v",
        ErrQuery,
        &["graph traversals", "not supported"],
    );
    t.error(
        "OUTBOUND",
        "FOR v IN OUTBOUND 'users/u01' knows RETURN v",
        ErrQuery,
        &["graph traversals", "not supported"],
    );
    t.error(
        "SEARCH",
        "FOR d IN users SEARCH d.name == 'x' RETURN d",
        ErrQuery,
        &["SEARCH", "not supported"],
    );
    t.error(
        "WINDOW",
        "FOR u IN users WINDOW { preceding: 1 } AGGREGATE s = SUM(u.age) RETURN s",
        ErrQuery,
        &["WINDOW", "not supported"],
    );
    t.error(
        "COLLECT ... INTO ... KEEP",
        "FOR u IN users COLLECT c = u.city INTO g KEEP u RETURN c",
        ErrQuery,
        &["KEEP", "not supported"],
    );
    t.error(
        "COLLECT ... OPTIONS",
        "FOR u IN users COLLECT c = u.city OPTIONS { method: 'hash' } RETURN c",
        ErrQuery,
        &["OPTIONS", "not supported"],
    );
    t.error(
        "array comparison operators",
        "RETURN [1, 2] ANY == 1",
        ErrQuery,
        &["array comparison operators", "not supported"],
    );
    t.error(
        "WITH collection declarations",
        "WITH users FOR u IN users RETURN u",
        ErrQuery,
        &["WITH", "not supported"],
    );
    t.error(
        "UPSERT FILTER",
        "UPSERT FILTER $CURRENT.a == 1 INSERT {a: 1} UPDATE {} IN w_never",
        ErrQuery,
        &["UPSERT FILTER", "not supported"],
    );
}

fn explain_cases(t: &mut Table) {
    t.group("EXPLAIN");
    t.plan(
        "equality uses an index",
        "FOR o IN orders FILTER o.status == 'paid' RETURN o",
        &["using index 'by_status'", "o.status == \"paid\""],
    );
    t.plan(
        "IN uses an index",
        "FOR o IN orders FILTER o.status IN ['open', 'cancelled'] RETURN o",
        &["using index 'by_status'"],
    );
    t.plan(
        "_key equality uses the primary index",
        "FOR u IN users FILTER u._key == 'u01' RETURN u",
        &["primary index"],
    );
    t.plan(
        "_key IN uses the primary index",
        "FOR u IN users FILTER u._key IN ['u01', 'u02'] RETURN u",
        &["primary index"],
    );
    t.plan(
        "a range uses an index",
        "FOR u IN users FILTER u.age > 50 AND u.age < 60 RETURN u",
        &["using index 'by_age'"],
    );
    t.plan(
        "equality then range on a compound index",
        "FOR u IN users FILTER u.active == true AND u.score > 80 RETURN u",
        &["using index 'by_active_score'"],
    );
    t.plan(
        "SORT … LIMIT is served by an index",
        "FOR u IN users SORT u.age LIMIT 3 RETURN u",
        &["using index 'by_age'", "serves SORT", "no sort step"],
    );
    t.plan(
        "SORT DESC … LIMIT reads the index backwards",
        "FOR p IN products SORT p.price DESC LIMIT 2 RETURN p",
        &["using index 'by_price'", "descending"],
    );
    t.plan(
        "a sparse index is not used for == null",
        "FOR u IN users FILTER u.city == null RETURN u",
        &["full collection scan"],
    );
    t.plan(
        "a sparse index is used for a non-null constant",
        "FOR u IN users FILTER u.city == 'Rome' RETURN u",
        &["using index 'by_city'"],
    );
    t.plan(
        "a sparse index is not used for < (it matches null)",
        "FOR u IN users FILTER u.city < 'M' RETURN u",
        &["full collection scan"],
    );
    t.plan(
        "the inner loop of a join uses an index",
        "FOR u IN users FOR o IN orders FILTER o.user == u._key RETURN 1",
        &["using index 'by_user'", "(full collection scan)"],
    );
    t.plan(
        "no usable filter: a full scan",
        "FOR u IN users FILTER u.name LIKE 'A%' RETURN u",
        &["For u IN users (full collection scan)", "Filter", "Return"],
    );
    t.plan(
        "regression: a subquery's plan is shown, indented under its operation",
        "FOR u IN users LET n = (FOR o IN orders FILTER o.user == u._key RETURN 1) RETURN n",
        &[
            "Let n = (subquery)\n 3   For o IN orders using index 'by_user'",
            "   Return 1\n 6 Return n",
        ],
    );
    t.plan(
        "EXPLAIN of a write query runs nothing",
        "INSERT {_key: 'explained'} INTO users",
        &["INSERT into users"],
    );
    t.cases.last_mut().expect("case").after = Some((
        "RETURN [DOCUMENT('users/explained'), LENGTH(users)]",
        json!([[null, 30]]),
    ));
}

fn rows(v: Value) -> Expect {
    Expect::Rows(v)
}

fn insert_cases(t: &mut Table) {
    t.group("INSERT");
    t.write(
        "one document, RETURN NEW",
        &[],
        "INSERT {_key: 'a', v: 1} INTO w_insert RETURN [NEW._key, NEW._id, NEW.v]",
        json!({}),
        rows(json!([["a", "w_insert/a", 1]])),
        Some(("FOR d IN w_insert RETURN [d._key, d.v]", json!([["a", 1]]))),
    );
    t.write(
        "many documents from a FOR",
        &[],
        "FOR i IN 1..5 INSERT {_key: CONCAT('k', i), n: i} INTO w_insert_many RETURN NEW.n",
        json!({}),
        rows(json!([1, 2, 3, 4, 5])),
        Some(("RETURN LENGTH(w_insert_many)", json!([5]))),
    );
    t.write(
        "without RETURN the query returns nothing",
        &[],
        "FOR i IN 1..3 INSERT {n: i} INTO w_insert_noreturn",
        json!({}),
        rows(json!([])),
        Some((
            "FOR d IN w_insert_noreturn SORT d.n RETURN d.n",
            json!([1, 2, 3]),
        )),
    );
    t.write(
        "a generated key",
        &[],
        "INSERT {x: 1} INTO w_insert_genkey RETURN IS_KEY(NEW._key) AND NEW._id == CONCAT('w_insert_genkey/', NEW._key)",
        json!({}),
        rows(json!([true])),
        None,
    );
    t.write(
        "copy documents from another collection",
        &[],
        "FOR p IN products FILTER p.category == 'office' INSERT KEEP(p, '_key', 'name') INTO w_insert_copy RETURN NEW.name",
        json!({}),
        Expect::AnyOrder(json!(["Pen", "Notebook"])),
        Some((
            "FOR d IN w_insert_copy SORT d._key RETURN [d._key, d.name]",
            json!([["p5", "Pen"], ["p6", "Notebook"]]),
        )),
    );
    t.write(
        "bind parameters for the document and the collection",
        &[],
        "INSERT @doc INTO @@c RETURN NEW.x",
        json!({"@c": "w_insert_bind", "doc": {"_key": "b1", "x": [1, 2]}}),
        rows(json!([[1, 2]])),
        Some(("RETURN DOCUMENT('w_insert_bind/b1').x", json!([[1, 2]]))),
    );
    t.write(
        "a write query's results longer than a batch come through a cursor",
        &[],
        "FOR i IN 1..20 INSERT {n: i} INTO w_insert_batch RETURN NEW.n",
        json!({}),
        rows(json!((1..=20).collect::<Vec<_>>())),
        Some(("RETURN LENGTH(w_insert_batch)", json!([20]))),
    );
    t.write(
        "RETURN DISTINCT in a write query",
        &[],
        "FOR i IN [1, 1, 2] INSERT {v: i} INTO w_insert_distinct RETURN DISTINCT NEW.v",
        json!({}),
        Expect::AnyOrder(json!([1, 2])),
        Some(("RETURN LENGTH(w_insert_distinct)", json!([3]))),
    );
    t.write(
        "reading and writing one collection: the read sees the snapshot at query start",
        &["FOR k IN ['a', 'b', 'c'] INSERT {_key: k} INTO w_insert_snapshot"],
        "FOR d IN w_insert_snapshot INSERT {_key: CONCAT(d._key, 'x')} INTO w_insert_snapshot",
        json!({}),
        rows(json!([])),
        Some((
            "FOR d IN w_insert_snapshot SORT d._key RETURN d._key",
            json!(["a", "ax", "b", "bx", "c", "cx"]),
        )),
    );
    t.write(
        "_id and _rev in the document are ignored",
        &[],
        "INSERT {_key: 'a', _id: 'other/x', _rev: 'r'} INTO w_insert_sys RETURN [NEW._id, NEW._rev != 'r']",
        json!({}),
        rows(json!([["w_insert_sys/a", true]])),
        None,
    );
    t.write(
        "regression: an unsupported option (overwriteMode) is refused, not ignored",
        &["INSERT {_key: 'a', v: 1, w: 1} INTO w_insert_overwrite"],
        "INSERT {_key: 'a', v: 2} INTO w_insert_overwrite OPTIONS {overwriteMode: 'replace'} RETURN [OLD.v, NEW.v, HAS(NEW, 'w')]",
        json!({}),
        Expect::Error(ErrorCode::ErrQuery, &["overwriteMode", "not supported", "keepNull"]),
        Some(("RETURN DOCUMENT('w_insert_overwrite/a').v", json!([1]))),
    );
    t.write(
        "regression: an unsupported option (ignoreErrors) is refused, not ignored",
        &["INSERT {_key: 'a'} INTO w_insert_ignore"],
        "FOR k IN ['a', 'b'] INSERT {_key: k} INTO w_insert_ignore OPTIONS {ignoreErrors: true} RETURN NEW._key",
        json!({}),
        Expect::Error(ErrorCode::ErrQuery, &["ignoreErrors", "not supported"]),
        Some(("FOR d IN w_insert_ignore SORT d._key RETURN d._key", json!(["a"]))),
    );
    t.write(
        "supported options: waitForSync and keepNull",
        &[],
        "INSERT {_key: 'a', n: null} INTO w_insert_options OPTIONS {waitForSync: true, keepNull: true} RETURN HAS(NEW, 'n')",
        json!({}),
        rows(json!([true])),
        None,
    );
    t.write(
        "INSERT needs an object",
        &[],
        "INSERT 42 INTO w_insert_bad",
        json!({}),
        Expect::Error(ErrorCode::ErrQuery, &["INSERT needs an object", "number"]),
        None,
    );
    t.write(
        "a duplicate _key is a conflict and changes nothing",
        &[],
        "INSERT {_key: 'u01', name: 'dup'} INTO users",
        json!({}),
        Expect::Error(ErrorCode::ErrConflict, &["u01"]),
        Some((
            "RETURN [LENGTH(users), DOCUMENT('users/u01').name]",
            json!([[30, "Alice"]]),
        )),
    );
}

fn update_replace_remove_cases(t: &mut Table) {
    t.group("UPDATE");
    t.write(
        "key WITH changes: merges objects and stores nulls by default (keepNull true)",
        &["INSERT {_key: 'a', v: 1, keep: 'y', o: {x: 1}} INTO w_update"],
        "UPDATE 'a' WITH {v: 2, extra: null, o: {y: 2}} IN w_update RETURN [OLD.v, NEW.v, NEW.keep, HAS(NEW, 'extra'), NEW.o]",
        json!({}),
        rows(json!([[1, 2, "y", true, {"x": 1, "y": 2}]])),
        Some((
            "RETURN UNSET(DOCUMENT('w_update/a'), '_rev', '_id')",
            json!([{"_key": "a", "v": 2, "keep": "y", "extra": null, "o": {"x": 1, "y": 2}}]),
        )),
    );
    t.write(
        "keepNull: false removes attributes set to null",
        &["INSERT {_key: 'a', v: 1, gone: 'x', stays: 2} INTO w_update_keepnull"],
        "UPDATE 'a' WITH {gone: null, v: null} IN w_update_keepnull OPTIONS {keepNull: false} RETURN ATTRIBUTES(NEW, true)",
        json!({}),
        rows(json!([["stays"]])),
        None,
    );
    t.write(
        "documents of a FOR, with values computed from them",
        &["FOR i IN 1..3 INSERT {_key: TO_STRING(i), n: i} INTO w_update_for"],
        "FOR d IN w_update_for FILTER d.n >= 2 UPDATE d WITH {n: d.n * 10} IN w_update_for RETURN NEW.n",
        json!({}),
        Expect::AnyOrder(json!([20, 30])),
        Some(("FOR d IN w_update_for SORT d._key RETURN d.n", json!([1, 20, 30]))),
    );
    t.write(
        "a document with _key and no WITH",
        &["INSERT {_key: 'a', v: 1} INTO w_update_doc"],
        "UPDATE {_key: 'a', w: 2} IN w_update_doc RETURN [NEW.v, NEW.w]",
        json!({}),
        rows(json!([[1, 2]])),
        None,
    );
    t.write(
        "OLD and NEW in RETURN",
        &["INSERT {_key: 'c', n: 41} INTO w_update_counter"],
        "FOR d IN w_update_counter UPDATE d WITH {n: d.n + 1} IN w_update_counter RETURN {before: OLD.n, after: NEW.n, delta: NEW.n - OLD.n}",
        json!({}),
        rows(json!([{"before": 41, "after": 42, "delta": 1}])),
        None,
    );
    t.write(
        "a bind @@collection",
        &["FOR i IN 1..2 INSERT {_key: TO_STRING(i)} INTO w_update_bind"],
        "FOR d IN @@c UPDATE d WITH {seen: true} IN @@c",
        json!({"@c": "w_update_bind"}),
        rows(json!([])),
        Some((
            "FOR d IN w_update_bind SORT d._key RETURN [d._key, d.seen]",
            json!([["1", true], ["2", true]]),
        )),
    );
    t.write(
        "regression: mergeObjects: false is refused, not ignored",
        &["INSERT {_key: 'a', o: {x: 1}} INTO w_update_nomerge"],
        "UPDATE 'a' WITH {o: {y: 2}} IN w_update_nomerge OPTIONS {mergeObjects: false} RETURN NEW.o",
        json!({}),
        Expect::Error(ErrorCode::ErrQuery, &["mergeObjects: false", "not supported"]),
        Some(("RETURN DOCUMENT('w_update_nomerge/a').o", json!([{"x": 1}]))),
    );
    t.write(
        "mergeObjects: true (the default) merges sub-objects",
        &["INSERT {_key: 'a', o: {x: 1}} INTO w_update_merge"],
        "UPDATE 'a' WITH {o: {y: 2}} IN w_update_merge OPTIONS {mergeObjects: true} RETURN NEW.o",
        json!({}),
        rows(json!([{"x": 1, "y": 2}])),
        None,
    );
    t.write(
        "keepNull: false removes nested nulls too",
        &["INSERT {_key: 'a', o: {x: 1, y: 2}} INTO w_update_nested_null"],
        "UPDATE 'a' WITH {o: {x: null}} IN w_update_nested_null OPTIONS {keepNull: false} RETURN NEW.o",
        json!({}),
        rows(json!([{"y": 2}])),
        None,
    );
    t.write(
        "the same document several times in one query",
        &["INSERT {_key: 'a', n: 0} INTO w_update_twice"],
        "FOR i IN 1..3 UPDATE 'a' WITH {n: i} IN w_update_twice RETURN [OLD.n, NEW.n]",
        json!({}),
        rows(json!([[0, 1], [1, 2], [2, 3]])),
        Some(("RETURN DOCUMENT('w_update_twice/a').n", json!([3]))),
    );
    t.write(
        "_key in the WITH document does not rename",
        &["INSERT {_key: 'a', n: 0} INTO w_update_rename"],
        "UPDATE 'a' WITH {_key: 'b', n: 1} IN w_update_rename RETURN [NEW._key, NEW.n]",
        json!({}),
        rows(json!([["a", 1]])),
        Some(("FOR d IN w_update_rename RETURN d._key", json!(["a"]))),
    );
    t.write(
        "a missing document is not found",
        &["INSERT {_key: 'a'} INTO w_update_missing"],
        "UPDATE 'nope' WITH {a: 1} IN w_update_missing",
        json!({}),
        Expect::Error(ErrorCode::ErrNotFound, &["nope"]),
        None,
    );
    t.write(
        "UPDATE needs a key",
        &["INSERT {_key: 'a'} INTO w_update_nokey"],
        "UPDATE {v: 1} IN w_update_nokey",
        json!({}),
        Expect::Error(ErrorCode::ErrQuery, &["_key"]),
        None,
    );

    t.group("REPLACE");
    t.write(
        "key WITH document replaces every attribute",
        &["INSERT {_key: 'a', v: 1, w: 2} INTO w_replace"],
        "REPLACE 'a' WITH {z: 3} IN w_replace RETURN [OLD.v, NEW.z, HAS(NEW, 'v'), NEW._key]",
        json!({}),
        rows(json!([[1, 3, false, "a"]])),
        Some((
            "RETURN ATTRIBUTES(DOCUMENT('w_replace/a'), true)",
            json!([["z"]]),
        )),
    );
    t.write(
        "a document with _key",
        &["INSERT {_key: 'a', v: 1} INTO w_replace_doc"],
        "REPLACE {_key: 'a', only: true} IN w_replace_doc RETURN ATTRIBUTES(NEW, true)",
        json!({}),
        rows(json!([["only"]])),
        None,
    );

    t.group("REMOVE");
    t.write(
        "by key, RETURN OLD",
        &["FOR k IN ['a', 'b', 'c'] INSERT {_key: k} INTO w_remove"],
        "REMOVE 'b' IN w_remove RETURN OLD._key",
        json!({}),
        rows(json!(["b"])),
        Some((
            "FOR d IN w_remove SORT d._key RETURN d._key",
            json!(["a", "c"]),
        )),
    );
    t.write(
        "documents of a FOR with a FILTER",
        &["FOR i IN 1..6 INSERT {n: i} INTO w_remove_for"],
        "FOR d IN w_remove_for FILTER d.n % 2 == 0 REMOVE d IN w_remove_for RETURN OLD.n",
        json!({}),
        Expect::AnyOrder(json!([2, 4, 6])),
        Some((
            "FOR d IN w_remove_for SORT d.n RETURN d.n",
            json!([1, 3, 5]),
        )),
    );
    t.write(
        "a document object",
        &["INSERT {_key: 'a'} INTO w_remove_doc"],
        "REMOVE {_key: 'a'} IN w_remove_doc",
        json!({}),
        rows(json!([])),
        Some(("RETURN LENGTH(w_remove_doc)", json!([0]))),
    );
    t.write(
        "a missing document is not found",
        &["INSERT {_key: 'a'} INTO w_remove_missing"],
        "REMOVE 'nope' IN w_remove_missing",
        json!({}),
        Expect::Error(ErrorCode::ErrNotFound, &["nope"]),
        None,
    );
}

fn upsert_cases(t: &mut Table) {
    t.group("UPSERT");
    t.write(
        "inserts when nothing matches, updates when something does",
        &[],
        "UPSERT {name: 'x'} INSERT {name: 'x', n: 1} UPDATE {n: OLD.n + 1} IN w_upsert RETURN [OLD.n, NEW.n]",
        json!({}),
        rows(json!([[null, 1]])),
        Some((
            "UPSERT {name: 'x'} INSERT {name: 'x', n: 1} UPDATE {n: OLD.n + 1} IN w_upsert RETURN [OLD.n, NEW.n]",
            json!([[1, 2]]),
        )),
    );
    t.write(
        "REPLACE variant",
        &["INSERT {_key: 'a', name: 'y', extra: 1} INTO w_upsert_replace"],
        "UPSERT {name: 'y'} INSERT {name: 'y'} REPLACE {name: 'y', replaced: true} IN w_upsert_replace RETURN [NEW._key, NEW.replaced, HAS(NEW, 'extra')]",
        json!({}),
        rows(json!([["a", true, false]])),
        None,
    );
    t.write(
        "regression: in a loop it sees its own earlier writes (word count; ArangoDB's readOwnWrites)",
        &[],
        "FOR w IN ['a', 'b', 'a', 'c', 'a'] UPSERT {word: w} INSERT {word: w, n: 1} UPDATE {n: OLD.n + 1} IN w_upsert_loop",
        json!({}),
        rows(json!([])),
        Some((
            "FOR d IN w_upsert_loop SORT d.word RETURN [d.word, d.n]",
            json!([["a", 3], ["b", 1], ["c", 1]]),
        )),
    );
    t.write(
        "search by _key",
        &["INSERT {_key: 'k', n: 1} INTO w_upsert_key"],
        "UPSERT {_key: 'k'} INSERT {_key: 'k', n: 100} UPDATE {n: OLD.n + 1} IN w_upsert_key RETURN NEW.n",
        json!({}),
        rows(json!([2])),
        None,
    );
    t.write(
        "a bind parameter as the search document",
        &[],
        "UPSERT @search INSERT MERGE(@search, {n: 1}) UPDATE {n: OLD.n + 1} IN w_upsert_bind RETURN NEW",
        json!({"search": {"email": "a@example.com"}}),
        Expect::Check(|rows| match rows {
            [doc] if doc["email"] == "a@example.com" && doc["n"] == 1 => Ok(()),
            _ => Err(format!("expected the inserted document with n = 1, got {rows:?}")),
        }),
        None,
    );
}

fn atomicity_cases(t: &mut Table) {
    t.group("atomicity");
    t.write(
        "a duplicate key on the 3rd of 5 inserts leaves nothing behind",
        &["INSERT {_key: 'k3', pre: true} INTO w_atomic"],
        "FOR i IN 1..5 INSERT {_key: CONCAT('k', i)} INTO w_atomic",
        json!({}),
        Expect::Error(ErrorCode::ErrConflict, &["k3"]),
        Some((
            "FOR d IN w_atomic RETURN [d._key, d.pre]",
            json!([["k3", true]]),
        )),
    );
    t.write(
        "removing a document twice fails and removes nothing",
        &["INSERT {_key: 'a'} INTO w_atomic_remove"],
        "FOR i IN 1..2 REMOVE 'a' IN w_atomic_remove",
        json!({}),
        Expect::Error(ErrorCode::ErrNotFound, &["'a'"]),
        Some(("FOR d IN w_atomic_remove RETURN d._key", json!(["a"]))),
    );
    t.write(
        "an update to a missing document undoes the updates before it",
        &["INSERT {_key: 'a', n: 1} INTO w_atomic_update"],
        "FOR d IN [{_key: 'a', n: 5}, {_key: 'zz', n: 6}] UPDATE d IN w_atomic_update",
        json!({}),
        Expect::Error(ErrorCode::ErrNotFound, &["zz"]),
        Some(("RETURN DOCUMENT('w_atomic_update/a').n", json!([1]))),
    );
    t.write(
        "a runtime error after writes undoes them",
        &["INSERT {_key: 'pre'} INTO w_atomic_runtime"],
        "FOR i IN 1..3 INSERT {_key: TO_STRING(i)} INTO w_atomic_runtime FILTER i < 3 OR FAIL('stop at 3') RETURN i",
        json!({}),
        Expect::Error(ErrorCode::ErrQuery, &["stop at 3"]),
        Some(("FOR d IN w_atomic_runtime RETURN d._key", json!(["pre"]))),
    );
}
