//! End-to-end acceptance tests: the Rust client (`themis_client`) against the real
//! server on loopback, with real storage in a temp directory.
//!
//! Each test drives one user-visible behaviour of the wire contract
//! (`docs/protocol.md`) through the public client API and checks exact error codes and
//! the parts of messages that tell a user what went wrong. Where the client hides a
//! wire detail the contract pins down (positional reads, `not_found`, session resume),
//! the test looks at the raw messages too.

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{code_of, expect_server_error, RawConn, TestServer, ROOT_PASSWORD};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use themis_client::{wire, Client, DeleteOptions, Error, ErrorCode, OpCode, UpdateOptions};
use themis_proto::features;

// ---- helpers ------------------------------------------------------------------------

/// The user attributes of a stored document (everything but `_key`, `_id`, `_rev`).
fn user_attrs(doc: &Value) -> Value {
    let mut map = doc.as_object().expect("document is an object").clone();
    for system in ["_key", "_id", "_rev"] {
        map.remove(system);
    }
    Value::Object(map)
}

fn str_field<'a>(doc: &'a Value, field: &str) -> &'a str {
    doc.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{field} missing or not a string in {doc}"))
}

async fn collection_names(client: &Client) -> Vec<String> {
    client
        .list_collections()
        .await
        .expect("list_collections")
        .into_iter()
        .map(|c| c.name)
        .collect()
}

async fn count_of(client: &Client, collection: &str) -> u64 {
    client
        .collection_stats(collection)
        .await
        .expect("collection_stats")
        .count
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

// ---- 1. CRUD with a serde struct -----------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Book {
    title: String,
    pages: u32,
    tags: Vec<String>,
}

/// A book as stored: the system attributes plus the user's.
#[derive(Debug, Deserialize)]
struct StoredBook {
    #[serde(rename = "_key")]
    key: String,
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_rev")]
    rev: String,
    #[serde(flatten)]
    book: Book,
}

/// A book the caller names itself.
#[derive(Debug, Serialize)]
struct KeyedBook<'a> {
    #[serde(rename = "_key")]
    key: &'a str,
    #[serde(flatten)]
    book: &'a Book,
}

fn book(title: &str, pages: u32) -> Book {
    Book {
        title: title.into(),
        pages,
        tags: vec!["sf".into(), title.to_lowercase()],
    }
}

#[tokio::test]
async fn crud_round_trip_with_serde_struct() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let books = client.collection("books");

    // Generated key.
    let solaris = book("Solaris", 204);
    let meta = books.insert(&solaris).await.expect("insert");
    assert!(!meta.key.is_empty(), "a generated key: {meta:?}");
    assert!(!meta.rev.is_empty(), "a revision: {meta:?}");
    let stored: StoredBook = books
        .get(&meta.key)
        .await
        .expect("get")
        .expect("the inserted document exists");
    assert_eq!(stored.key, meta.key);
    assert_eq!(stored.id, format!("books/{}", meta.key));
    assert_eq!(stored.rev, meta.rev);
    assert_eq!(stored.book, solaris);

    // Explicit key.
    let dune = book("Dune", 412);
    let meta = books
        .insert(&KeyedBook {
            key: "dune-1965",
            book: &dune,
        })
        .await
        .expect("insert with _key");
    assert_eq!(meta.key, "dune-1965");
    let stored: StoredBook = books.get("dune-1965").await.unwrap().expect("exists");
    assert_eq!(
        (stored.key.as_str(), stored.id.as_str(), stored.rev.as_str()),
        ("dune-1965", "books/dune-1965", meta.rev.as_str())
    );
    assert_eq!(stored.book, dune);

    // Duplicate key: a conflict, and the first document is untouched.
    let err = books
        .insert(&KeyedBook {
            key: "dune-1965",
            book: &book("Not Dune", 1),
        })
        .await;
    assert!(matches!(&err, Err(e) if e.is_conflict()), "{err:?}");
    expect_server_error(
        err,
        ErrorCode::ErrConflict,
        &["dune-1965", "already exists", "books"],
    );
    let again: StoredBook = books.get("dune-1965").await.unwrap().expect("still there");
    assert_eq!((again.rev, again.book), (meta.rev.clone(), dune));

    // A key nobody inserted reads as None, not as an error.
    let missing: Option<Book> = books.get("no-such-book").await.expect("get missing");
    assert!(missing.is_none());

    // Delete: true once, then false; reads None afterwards.
    assert!(books.delete("dune-1965").await.expect("delete"));
    assert!(!books.delete("dune-1965").await.expect("delete again"));
    let gone: Option<Book> = books.get("dune-1965").await.expect("get after delete");
    assert!(gone.is_none());
    // The other document is not affected.
    assert_eq!(count_of(&client, "books").await, 1);
}

// ---- 2. Bulk insert ------------------------------------------------------------------

#[tokio::test]
async fn bulk_insert_is_ordered_and_all_or_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let items = client.collection("items");

    // 500 documents, three of them with their own key, in one request.
    let docs: Vec<Value> = (0..500)
        .map(|i| match i {
            0 | 250 | 499 => json!({ "_key": format!("explicit-{i}"), "i": i }),
            _ => json!({ "i": i, "payload": format!("doc-{i}") }),
        })
        .collect();
    let keys = items.insert_many(&docs).await.expect("bulk insert");
    assert_eq!(keys.len(), 500);
    assert_eq!(keys[0], "explicit-0");
    assert_eq!(keys[250], "explicit-250");
    assert_eq!(keys[499], "explicit-499");
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        500,
        "keys are distinct"
    );
    let read: Vec<Option<Value>> = items.get_many(&keys).await.expect("read back");
    for (i, (key, doc)) in keys.iter().zip(&read).enumerate() {
        let doc = doc.as_ref().unwrap_or_else(|| panic!("key {key} missing"));
        assert_eq!(str_field(doc, "_key"), key);
        assert_eq!(doc["i"], json!(i), "position {i} holds its own document");
    }
    assert_eq!(count_of(&client, "items").await, 500);

    // One JSON array among objects: nothing of the batch is stored, and the error
    // names the position.
    let bad_batch = vec![
        json!({ "_key": "fresh-0", "ok": true }),
        json!({ "ok": true }),
        json!([1, 2, 3]),
        json!({ "ok": true }),
    ];
    expect_server_error(
        items.insert_many(&bad_batch).await,
        ErrorCode::ErrInvalidArgument,
        &["position 2", "JSON object", "an array"],
    );
    assert_eq!(count_of(&client, "items").await, 500);
    assert!(items.get::<Value>("fresh-0").await.unwrap().is_none());

    // A bad _key at position 1.
    let bad_key = vec![
        json!({ "_key": "fresh-1" }),
        json!({ "_key": "has space" }),
        json!({}),
    ];
    expect_server_error(
        items.insert_many(&bad_key).await,
        ErrorCode::ErrInvalidArgument,
        &["position 1", "has space", "1-254 bytes"],
    );

    // A key that already exists at position 3: a conflict, still nothing stored.
    let dup = vec![
        json!({ "_key": "fresh-2" }),
        json!({}),
        json!({}),
        json!({ "_key": "explicit-250" }),
    ];
    expect_server_error(
        items.insert_many(&dup).await,
        ErrorCode::ErrConflict,
        &["position 3", "explicit-250", "already exists"],
    );

    // The same key twice within one batch.
    let twice = vec![json!({ "_key": "twin" }), json!({ "_key": "twin" })];
    expect_server_error(
        items.insert_many(&twice).await,
        ErrorCode::ErrConflict,
        &["position 1", "twin"],
    );

    assert_eq!(count_of(&client, "items").await, 500);
    let leftovers: Vec<Option<Value>> = items
        .get_many(&["fresh-0", "fresh-1", "fresh-2", "twin"])
        .await
        .unwrap();
    assert_eq!(leftovers, vec![None, None, None, None]);
    // The explicit-250 document is the original one.
    let original: Value = items.get("explicit-250").await.unwrap().unwrap();
    assert_eq!(original["i"], json!(250));
}

// ---- 3. Multi-id read ----------------------------------------------------------------

#[tokio::test]
async fn multi_read_reports_missing_ids_positionally() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let people = client.collection("people");
    people
        .insert(&json!({ "_key": "ann", "name": "Ann" }))
        .await
        .unwrap();
    people
        .insert(&json!({ "_key": "cy", "name": "Cy" }))
        .await
        .unwrap();

    let got: Vec<Option<Value>> = people
        .get_many(&["ann", "bob", "cy"])
        .await
        .expect("get_many");
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].as_ref().map(|d| d["name"].clone()),
        Some(json!("Ann"))
    );
    assert!(got[1].is_none(), "{:?}", got[1]);
    assert_eq!(
        got[2].as_ref().map(|d| d["name"].clone()),
        Some(json!("Cy"))
    );

    // The raw answer: positional documents with empty bytes where missing, and
    // `not_found` naming exactly the missing id.
    let raw: wire::ReadResponse = client
        .raw_request(
            OpCode::OpRead,
            &wire::ReadRequest {
                collection: "people".into(),
                document_ids: vec!["ann".into(), "bob".into(), "cy".into()],
                ..Default::default()
            },
        )
        .await
        .expect("raw read");
    assert!(raw.success, "{raw:?}");
    assert!(raw.error.is_none(), "a missing id is not an error: {raw:?}");
    assert_eq!(raw.documents.len(), 3);
    assert!(raw.documents[1].is_empty(), "{:?}", raw.documents[1]);
    let first: Value = serde_json::from_slice(&raw.documents[0]).expect("JSON");
    let third: Value = serde_json::from_slice(&raw.documents[2]).expect("JSON");
    assert_eq!(
        (str_field(&first, "_id"), str_field(&third, "_id")),
        ("people/ann", "people/cy")
    );
    assert_eq!(raw.not_found, vec!["bob".to_string()]);

    // All missing, and the same missing id twice.
    let raw: wire::ReadResponse = client
        .raw_request(
            OpCode::OpRead,
            &wire::ReadRequest {
                collection: "people".into(),
                document_ids: vec!["x".into(), "ann".into(), "x".into()],
                ..Default::default()
            },
        )
        .await
        .expect("raw read");
    assert!(raw.success, "{raw:?}");
    assert_eq!(raw.documents.len(), 3);
    assert!(raw.documents[0].is_empty() && raw.documents[2].is_empty());
    assert!(!raw.documents[1].is_empty());
    assert!(
        raw.not_found.iter().all(|id| id == "x") && !raw.not_found.is_empty(),
        "{:?}",
        raw.not_found
    );
}

// ---- 4. Merge vs replace -------------------------------------------------------------

#[tokio::test]
async fn merge_patches_and_replace_swaps() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let users = client.collection("users");
    let v1 = users
        .insert(&json!({
            "_key": "ann",
            "name": "Ann",
            "age": 30,
            "nick": "annie",
            "address": { "city": "Oslo", "zip": "0150", "geo": { "lat": 59.9, "lon": 10.7 } },
            "tags": ["a", "b"],
        }))
        .await
        .unwrap();

    // MERGE: change, add, remove with null, merge nested objects; arrays are values.
    // System attributes in the patch are ignored.
    let v2 = users
        .update(
            "ann",
            &json!({
                "_key": "hijack",
                "age": 31,
                "email": "ann@example.com",
                "nick": null,
                "address": { "zip": "0151", "street": "Main 1", "geo": { "lon": 10.8 } },
                "tags": ["c"],
            }),
        )
        .await
        .expect("merge");
    assert_eq!(v2.key, "ann");
    assert_ne!(v2.rev, v1.rev, "_rev changes on every write");
    let doc: Value = users.get("ann").await.unwrap().expect("exists");
    assert_eq!(str_field(&doc, "_key"), "ann");
    assert_eq!(str_field(&doc, "_id"), "users/ann");
    assert_eq!(str_field(&doc, "_rev"), v2.rev);
    assert_eq!(
        user_attrs(&doc),
        json!({
            "name": "Ann",
            "age": 31,
            "email": "ann@example.com",
            "address": {
                "city": "Oslo",
                "zip": "0151",
                "street": "Main 1",
                "geo": { "lat": 59.9, "lon": 10.8 },
            },
            "tags": ["c"],
        })
    );
    assert!(users.get::<Value>("hijack").await.unwrap().is_none());

    // REPLACE: attributes not given are gone.
    let v3 = users
        .replace("ann", &json!({ "name": "Ann B.", "nick": null }))
        .await
        .expect("replace");
    assert_eq!(v3.key, "ann");
    assert_ne!(v3.rev, v2.rev);
    let doc: Value = users.get("ann").await.unwrap().expect("exists");
    assert_eq!(str_field(&doc, "_key"), "ann");
    assert_eq!(str_field(&doc, "_rev"), v3.rev);
    // REPLACE keeps a null as a value (only MERGE treats null as "remove").
    assert_eq!(user_attrs(&doc), json!({ "name": "Ann B.", "nick": null }));

    // An explicit merge through update_with behaves like update.
    let v4 = users
        .update_with("ann", &json!({ "nick": null }), UpdateOptions::merge())
        .await
        .unwrap();
    assert_ne!(v4.rev, v3.rev);
    let doc: Value = users.get("ann").await.unwrap().unwrap();
    assert_eq!(user_attrs(&doc), json!({ "name": "Ann B." }));

    // A missing document cannot be updated or replaced.
    let err = users.update("nobody", &json!({ "x": 1 })).await;
    assert!(matches!(&err, Err(e) if e.is_not_found()), "{err:?}");
    expect_server_error(
        err,
        ErrorCode::ErrNotFound,
        &["nobody", "not found", "users"],
    );
    expect_server_error(
        users.replace("nobody", &json!({ "x": 1 })).await,
        ErrorCode::ErrNotFound,
        &["nobody"],
    );
    assert!(users.get::<Value>("nobody").await.unwrap().is_none());

    // A patch that is not an object is refused and changes nothing.
    expect_server_error(
        users.update("ann", &json!([1])).await,
        ErrorCode::ErrInvalidArgument,
        &["JSON object"],
    );
    let doc: Value = users.get("ann").await.unwrap().unwrap();
    assert_eq!(str_field(&doc, "_rev"), v4.rev);
}

// ---- 5. Revision conflicts -----------------------------------------------------------

#[tokio::test]
async fn stale_revisions_conflict_and_change_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let accounts = client.collection("accounts");
    let r1 = accounts
        .insert(&json!({ "_key": "acc", "balance": 100 }))
        .await
        .unwrap()
        .rev;

    // The current revision: applies.
    let r2 = accounts
        .update_with(
            "acc",
            &json!({ "balance": 90 }),
            UpdateOptions::merge().if_revision(r1.clone()),
        )
        .await
        .expect("update with the current _rev")
        .rev;
    assert_ne!(r2, r1);

    // A stale revision: conflict, naming both revisions; nothing changes.
    for options in [
        UpdateOptions::merge().if_revision(r1.clone()),
        UpdateOptions::replace().if_revision(r1.clone()),
    ] {
        let err = accounts
            .update_with("acc", &json!({ "balance": 0 }), options)
            .await;
        assert!(matches!(&err, Err(e) if e.is_conflict()), "{err:?}");
        expect_server_error(
            err,
            ErrorCode::ErrConflict,
            &["revision mismatch", "acc", r1.as_str(), r2.as_str()],
        );
    }
    let doc: Value = accounts.get("acc").await.unwrap().unwrap();
    assert_eq!(str_field(&doc, "_rev"), r2);
    assert_eq!(doc["balance"], json!(90));

    // Delete with a stale revision: conflict, the document stays.
    expect_server_error(
        accounts
            .delete_with("acc", DeleteOptions::if_revision(r1.clone()))
            .await,
        ErrorCode::ErrConflict,
        &["revision mismatch", r2.as_str()],
    );
    let doc: Value = accounts.get("acc").await.unwrap().expect("still there");
    assert_eq!(str_field(&doc, "_rev"), r2);

    // With the right revision: deleted.
    assert!(accounts
        .delete_with("acc", DeleteOptions::if_revision(r2.clone()))
        .await
        .expect("delete with the current _rev"));
    assert!(accounts.get::<Value>("acc").await.unwrap().is_none());
    // A conditional delete of a missing document is "not there", not a conflict.
    assert!(!accounts
        .delete_with("acc", DeleteOptions::if_revision(r2))
        .await
        .expect("conditional delete of a missing document"));
}

// ---- 6. Databases and collections ----------------------------------------------------

#[tokio::test]
async fn database_and_collection_admin() {
    let server = TestServer::start().await;
    let client = server.client().await;

    client
        .create_database("shop")
        .await
        .expect("create_database");
    let dbs = client.list_databases().await.expect("list_databases");
    assert!(
        dbs.iter().any(|d| d == "shop") && dbs.iter().any(|d| d == "_system"),
        "{dbs:?}"
    );
    expect_server_error(
        client.create_database("shop").await,
        ErrorCode::ErrConflict,
        &["shop", "already exists"],
    );

    // Same collection name and key in two databases: separate documents.
    let shop = client.database("shop");
    assert_eq!(shop.database_name(), "shop");
    let shop_items = shop.collection("items");
    let system_items = client.collection("items");
    shop_items
        .insert(&json!({ "_key": "k1", "home": "shop" }))
        .await
        .expect("insert into shop");
    system_items
        .insert(&json!({ "_key": "k1", "home": "_system" }))
        .await
        .expect("same key in _system is no conflict");
    shop_items
        .insert_many(&[json!({ "home": "shop" }), json!({ "home": "shop" })])
        .await
        .unwrap();
    let in_shop: Value = shop_items.get("k1").await.unwrap().unwrap();
    let in_system: Value = system_items.get("k1").await.unwrap().unwrap();
    assert_eq!(in_shop["home"], json!("shop"));
    assert_eq!(in_system["home"], json!("_system"));
    assert_eq!(count_of(&shop, "items").await, 3);
    assert_eq!(count_of(&client, "items").await, 1);

    // Collections.
    shop.create_collection("orders")
        .await
        .expect("create_collection");
    expect_server_error(
        shop.create_collection("orders").await,
        ErrorCode::ErrConflict,
        &["orders", "already exists", "shop"],
    );
    let mut names = collection_names(&shop).await;
    names.sort();
    assert_eq!(names, vec!["items", "orders"]);
    assert_eq!(collection_names(&client).await, vec!["items"]);
    assert_eq!(count_of(&shop, "orders").await, 0);
    let stats = shop.collection_stats("items").await.unwrap();
    assert_eq!(stats.name, "items");
    assert!(stats.data_bytes > 0, "{stats:?}");
    expect_server_error(
        shop.collection_stats("nope").await,
        ErrorCode::ErrNotFound,
        &["nope", "not found"],
    );

    // Drop a collection: reading from it is NOT_FOUND; the other database's
    // collection of the same name is untouched.
    shop.drop_collection("items")
        .await
        .expect("drop_collection");
    expect_server_error(
        shop_items.get::<Value>("k1").await,
        ErrorCode::ErrNotFound,
        &["items", "not found"],
    );
    assert_eq!(collection_names(&shop).await, vec!["orders"]);
    let still: Value = system_items.get("k1").await.unwrap().expect("untouched");
    assert_eq!(still["home"], json!("_system"));
    expect_server_error(
        shop.drop_collection("items").await,
        ErrorCode::ErrNotFound,
        &["items"],
    );
    // A collection created again under the dropped name starts empty.
    shop_items
        .insert(&json!({ "_key": "k2", "home": "shop, again" }))
        .await
        .expect("insert re-creates the collection");
    assert_eq!(count_of(&shop, "items").await, 1);
    assert!(shop_items.get::<Value>("k1").await.unwrap().is_none());
    shop.drop_collection("items").await.unwrap();

    // Bad and reserved names.
    for bad in ["bad name", "9lives", "a/b", ""] {
        expect_server_error(
            client.create_database(bad).await,
            ErrorCode::ErrInvalidArgument,
            &["invalid database name", "starts with a letter"],
        );
        expect_server_error(
            shop.create_collection(bad).await,
            ErrorCode::ErrInvalidArgument,
            &["invalid collection name"],
        );
    }
    expect_server_error(
        client.create_database(&"d".repeat(65)).await,
        ErrorCode::ErrInvalidArgument,
        &["at most 64 characters"],
    );
    expect_server_error(
        client.create_database("_foo").await,
        ErrorCode::ErrInvalidArgument,
        &["_foo", "reserved"],
    );
    expect_server_error(
        shop.create_collection("_foo").await,
        ErrorCode::ErrInvalidArgument,
        &["_foo", "reserved"],
    );
    let dbs = client.list_databases().await.unwrap();
    assert!(!dbs.iter().any(|d| d == "_foo"), "{dbs:?}");

    // `_system` cannot be dropped: not from a connection that uses it, and not from
    // one that does not.
    expect_server_error(
        client.drop_database("_system").await,
        ErrorCode::ErrInvalidArgument,
        &["_system"],
    );
    let from_shop = Client::connect(&format!("{}/shop", server.url()))
        .await
        .expect("connect to shop");
    assert_eq!(from_shop.server_info().database, "shop");
    expect_server_error(
        from_shop.drop_database("_system").await,
        ErrorCode::ErrInvalidArgument,
        &["_system", "cannot be dropped"],
    );
    drop(from_shop);

    // Drop the database: gone from the list, its collections unreachable.
    client.drop_database("shop").await.expect("drop_database");
    let dbs = client.list_databases().await.unwrap();
    assert!(!dbs.iter().any(|d| d == "shop"), "{dbs:?}");
    expect_server_error(
        shop.collection("orders").get::<Value>("x").await,
        ErrorCode::ErrNotFound,
        &["shop", "not found"],
    );
    expect_server_error(
        client.drop_database("shop").await,
        ErrorCode::ErrNotFound,
        &["shop"],
    );
    assert_eq!(count_of(&client, "items").await, 1);

    // A handshake into a database that does not exist.
    let err = Client::connect(&format!("{}/nope", server.url())).await;
    assert!(matches!(&err, Err(e) if e.is_not_found()), "{err:?}");
    expect_server_error(err, ErrorCode::ErrNotFound, &["nope", "not found"]);
}

// ---- 7. One connection, a thousand concurrent requests --------------------------------

/// Prepares a server that accepts a single connection, its one client, and 500
/// documents to read. The connection cap proves the client never opens a second
/// connection: one would be refused.
async fn one_connection_fixture() -> (TestServer, Client, Vec<String>) {
    let server = TestServer::start_with(|c| c.wire.max_connections = 1).await;
    let client = server.client().await;
    let docs: Vec<Value> = (0..500)
        .map(|i| json!({ "_key": format!("pre-{i}"), "payload": format!("pre-payload-{i}") }))
        .collect();
    let keys = client
        .collection("mux")
        .insert_many(&docs)
        .await
        .expect("pre-insert");
    (server, client, keys)
}

/// Checks an insert's outcome: its key reads back its own payload at its revision.
async fn check_inserts(client: &Client, inserted: &[(String, themis_client::DocumentMeta)]) {
    let keys: Vec<&str> = inserted.iter().map(|(_, m)| m.key.as_str()).collect();
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        inserted.len(),
        "every insert got its own key"
    );
    let docs: Vec<Option<Value>> = client.collection("mux").get_many(&keys).await.unwrap();
    for ((payload, meta), doc) in inserted.iter().zip(docs) {
        let doc = doc.unwrap_or_else(|| panic!("{} missing", meta.key));
        assert_eq!(str_field(&doc, "payload"), payload, "{}", meta.key);
        assert_eq!(str_field(&doc, "_rev"), meta.rev, "{}", meta.key);
    }
}

/// The server still refuses a second connection, so the one above was the only one.
async fn assert_single_connection(server: &TestServer, client: &Client) {
    assert!(!client.is_closed());
    client.ping().await.expect("the one connection still works");
    let err = Client::connect(&server.url()).await;
    expect_server_error(err, ErrorCode::ErrResourceExhausted, &["max_connections"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_from_tasks_share_one_connection() {
    let (server, client, keys) = one_connection_fixture().await;

    enum Outcome {
        Inserted(String, themis_client::DocumentMeta),
        Read(String, Option<Value>),
    }
    let mut tasks = Vec::with_capacity(1000);
    for i in 0..500 {
        let mux = client.collection("mux");
        tasks.push(tokio::spawn(async move {
            let payload = format!("task-insert-{i}");
            let meta = mux
                .insert(&json!({ "payload": payload, "i": i }))
                .await
                .expect("insert");
            Outcome::Inserted(payload, meta)
        }));
    }
    for key in keys.iter().cloned() {
        let mux = client.collection("mux");
        tasks.push(tokio::spawn(async move {
            let doc = mux.get::<Value>(&key).await.expect("get");
            Outcome::Read(key, doc)
        }));
    }

    let mut inserted = Vec::new();
    let mut reads = 0;
    for task in tasks {
        match task.await.expect("task panicked") {
            Outcome::Inserted(payload, meta) => inserted.push((payload, meta)),
            Outcome::Read(key, doc) => {
                let doc = doc.unwrap_or_else(|| panic!("{key} missing"));
                assert_eq!(str_field(&doc, "_key"), key, "answer for another request");
                let n = key.strip_prefix("pre-").expect("pre- key");
                assert_eq!(str_field(&doc, "payload"), format!("pre-payload-{n}"));
                reads += 1;
            }
        }
    }
    assert_eq!((inserted.len(), reads), (500, 500));
    check_inserts(&client, &inserted).await;
    assert_eq!(client.in_flight_requests(), 0);
    assert_eq!(count_of(&client, "mux").await, 1000);
    assert_single_connection(&server, &client).await;
}

#[tokio::test]
async fn thousand_concurrent_requests_from_one_task_share_one_connection() {
    let (server, client, keys) = one_connection_fixture().await;
    let mux = client.collection("mux");

    let inserts = futures::future::join_all((0..500).map(|i| {
        let mux = mux.clone();
        async move {
            let payload = format!("joined-insert-{i}");
            let meta = mux
                .insert(&json!({ "payload": payload }))
                .await
                .expect("insert");
            (payload, meta)
        }
    }));
    let reads = futures::future::join_all(keys.iter().map(|key| {
        let mux = mux.clone();
        async move { (key.clone(), mux.get::<Value>(key).await.expect("get")) }
    }));
    // Sample how many requests wait on the connection at once while they run.
    let client_for_sampler = client.clone();
    let sampler = async move {
        let mut peak = 0;
        for _ in 0..2000 {
            peak = peak.max(client_for_sampler.in_flight_requests());
            tokio::task::yield_now().await;
        }
        peak
    };
    let ((inserted, read), peak) = tokio::join!(async { tokio::join!(inserts, reads) }, sampler);

    // On this single-threaded runtime every request registers before any answer is
    // read; a client that serialized them would show 1.
    assert!(
        peak >= 100,
        "requests were never in flight together (peak {peak}): the client serializes"
    );
    for (key, doc) in &read {
        let doc = doc.as_ref().unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(str_field(doc, "_key"), key, "answer for another request");
        let n = key.strip_prefix("pre-").expect("pre- key");
        assert_eq!(str_field(doc, "payload"), format!("pre-payload-{n}"));
    }
    check_inserts(&client, &inserted).await;
    assert_eq!(client.in_flight_requests(), 0);
    assert_eq!(count_of(&client, "mux").await, 1000);
    assert_single_connection(&server, &client).await;
}

// ---- 8. auto_create_collections ------------------------------------------------------

#[tokio::test]
async fn insert_creates_missing_collection_by_default() {
    let server = TestServer::start().await;
    let client = server.client().await;
    assert!(!collection_names(&client)
        .await
        .contains(&"fresh".to_string()));

    let meta = client
        .collection("fresh")
        .insert(&json!({ "n": 1 }))
        .await
        .expect("insert creates the collection");
    assert!(collection_names(&client)
        .await
        .contains(&"fresh".to_string()));
    assert_eq!(count_of(&client, "fresh").await, 1);
    let doc: Value = client
        .collection("fresh")
        .get(&meta.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc["n"], json!(1));

    // Bulk inserts create too.
    client
        .collection("fresh_bulk")
        .insert_many(&[json!({}), json!({})])
        .await
        .expect("bulk creates the collection");
    assert_eq!(count_of(&client, "fresh_bulk").await, 2);

    // Auto-creation follows the naming rules.
    expect_server_error(
        client.collection("_hidden").insert(&json!({})).await,
        ErrorCode::ErrInvalidArgument,
        &["_hidden", "reserved"],
    );
    expect_server_error(
        client.collection("no spaces").insert(&json!({})).await,
        ErrorCode::ErrInvalidArgument,
        &["invalid collection name"],
    );
    let names = collection_names(&client).await;
    assert!(
        !names.iter().any(|n| n == "_hidden" || n == "no spaces"),
        "{names:?}"
    );

    // Reading a collection never creates it.
    expect_server_error(
        client.collection("ghost").get::<Value>("k").await,
        ErrorCode::ErrNotFound,
        &["ghost"],
    );
    assert!(!collection_names(&client)
        .await
        .contains(&"ghost".to_string()));
}

#[tokio::test]
async fn without_auto_create_insert_into_missing_collection_is_not_found() {
    let server = TestServer::start_with(|c| c.server.auto_create_collections = false).await;
    let client = server.client().await;
    let fresh = client.collection("fresh");

    let err = fresh.insert(&json!({ "n": 1 })).await;
    assert!(matches!(&err, Err(e) if e.is_not_found()), "{err:?}");
    expect_server_error(
        err,
        ErrorCode::ErrNotFound,
        &["fresh", "create it", "auto_create_collections"],
    );
    expect_server_error(
        fresh.insert_many(&[json!({}), json!({})]).await,
        ErrorCode::ErrNotFound,
        &["fresh", "auto_create_collections"],
    );
    assert!(!collection_names(&client)
        .await
        .contains(&"fresh".to_string()));

    // Following the advice works.
    client.create_collection("fresh").await.unwrap();
    let meta = fresh.insert(&json!({ "n": 1 })).await.expect("insert");
    assert!(fresh.get::<Value>(&meta.key).await.unwrap().is_some());
    assert_eq!(count_of(&client, "fresh").await, 1);
}

// ---- 9. Session resume ---------------------------------------------------------------

fn resume_request(token: &str) -> wire::HandshakeRequest {
    wire::HandshakeRequest {
        protocol_version: "1.0".into(),
        client_name: "resume-test".into(),
        session_token: token.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn session_token_resumes_without_credentials() {
    let server = TestServer::start().await;

    let mut first = RawConn::connect(server.addr).await;
    let hello = first.handshake("root", ROOT_PASSWORD).await;
    assert!(hello.success, "{hello:?}");
    let token = hello.session_token.clone();
    assert!(token.len() >= 32, "a long random token: {token:?}");

    // A second connection presents only the token.
    let mut second = RawConn::connect(server.addr).await;
    second
        .send(OpCode::OpHandshake, 1, &resume_request(&token))
        .await;
    let f = second.recv().await.expect("handshake answer");
    assert_eq!((f.op(), f.request_id), (OpCode::OpHandshake, 1));
    let resumed: wire::HandshakeResponse = f.decode();
    assert!(resumed.success, "{resumed:?}");
    let info = resumed.server_info.expect("server_info");
    assert_eq!(info.username, "root");
    assert_eq!(info.database, "_system");
    assert_eq!(resumed.session_token, token);

    // The resumed connection is authenticated: it can write, with or without the
    // token on the request.
    for (request_id, token_field) in [(2, String::new()), (3, token.clone())] {
        let create = wire::CreateRequest {
            collection: "resumed".into(),
            document: br#"{"via":"resumed"}"#.to_vec().into(),
            session_token: token_field,
            ..Default::default()
        };
        second.send(OpCode::OpCreate, request_id, &create).await;
        let f = second.recv().await.expect("create answer");
        assert_eq!(f.request_id, request_id);
        let resp: wire::CreateResponse = f.decode();
        assert!(resp.success, "{resp:?}");
    }
    // A token that is not this connection's session is refused.
    let create = wire::CreateRequest {
        collection: "resumed".into(),
        document: br#"{}"#.to_vec().into(),
        session_token: "f".repeat(64),
        ..Default::default()
    };
    second.send(OpCode::OpCreate, 4, &create).await;
    let f = second.recv().await.expect("answer");
    assert_eq!(f.request_id, 4);
    assert_eq!(code_of(&f.error()), ErrorCode::ErrUnauthenticated);
    second.ping_ok(5).await;

    // The client's own session token resumes too.
    let client = server.client().await;
    let mut third = RawConn::connect(server.addr).await;
    third
        .send(
            OpCode::OpHandshake,
            1,
            &resume_request(&client.session_token()),
        )
        .await;
    let resumed: wire::HandshakeResponse = third.recv().await.expect("answer").decode();
    assert!(resumed.success, "{resumed:?}");
    assert_eq!(resumed.server_info.expect("server_info").username, "root");

    // Both documents written on the resumed connection are visible to the client.
    assert_eq!(count_of(&client, "resumed").await, 2);

    // Resuming may choose another (existing) default database, not a missing one.
    let client_db = server.client().await;
    client_db.create_database("elsewhere").await.unwrap();
    let mut fourth = RawConn::connect(server.addr).await;
    let mut request = resume_request(&token);
    request.database = "elsewhere".into();
    fourth.send(OpCode::OpHandshake, 1, &request).await;
    let moved: wire::HandshakeResponse = fourth.recv().await.expect("answer").decode();
    assert!(moved.success, "{moved:?}");
    let info = moved.server_info.expect("server_info");
    assert_eq!(
        (info.username.as_str(), info.database.as_str()),
        ("root", "elsewhere")
    );
    let mut fifth = RawConn::connect(server.addr).await;
    request.database = "nope".into();
    fifth.send(OpCode::OpHandshake, 1, &request).await;
    let refused: wire::HandshakeResponse = fifth.recv().await.expect("answer").decode();
    assert!(!refused.success, "{refused:?}");
    let err = refused.error.expect("field 15 error");
    assert_eq!(code_of(&err), ErrorCode::ErrNotFound);
    assert!(err.message.contains("nope"), "{}", err.message);

    // A bogus token is an authentication failure that says what to do.
    let mut bogus = RawConn::connect(server.addr).await;
    bogus
        .send(OpCode::OpHandshake, 1, &resume_request("not-a-real-token"))
        .await;
    let refused: wire::HandshakeResponse = bogus.recv().await.expect("answer").decode();
    assert!(!refused.success, "{refused:?}");
    assert!(refused.session_token.is_empty(), "{refused:?}");
    let err = refused.error.expect("field 15 error");
    assert_eq!(code_of(&err), ErrorCode::ErrAuthFailed);
    assert!(
        err.message.contains("session token") && err.message.contains("credentials"),
        "{}",
        err.message
    );
    // And the refused connection is not authenticated.
    bogus
        .send(
            OpCode::OpRead,
            2,
            &wire::ReadRequest {
                collection: "resumed".into(),
                document_ids: vec!["x".into()],
                ..Default::default()
            },
        )
        .await;
    let f = bogus.recv().await.expect("answer");
    assert_eq!(code_of(&f.error()), ErrorCode::ErrUnauthenticated);

    // The first connection is unaffected by all of this.
    first.ping_ok(9).await;
}

// ---- 10. PING and ServerInfo ---------------------------------------------------------

#[tokio::test]
async fn ping_and_server_info() {
    let server = TestServer::start().await;
    let client = server.client().await;

    let rtt = client.ping().await.expect("ping");
    assert!(
        rtt > Duration::ZERO && rtt < Duration::from_secs(10),
        "{rtt:?}"
    );
    let pong: wire::Pong = client
        .raw_request(OpCode::OpPing, &wire::Ping { timestamp_ms: 4242 })
        .await
        .expect("raw ping");
    assert_eq!(pong.timestamp_ms, 4242);
    let now = unix_millis();
    assert!(
        pong.server_time_ms.abs_diff(now) < 60_000,
        "server_time_ms {} vs now {now}",
        pong.server_time_ms
    );

    let info = client.server_info();
    assert_eq!(info.protocol_version, "1.0");
    assert!(!info.server_version.is_empty(), "{info:?}");
    assert_eq!(info.max_frame_bytes, 16 * 1024 * 1024);
    let required = features::MULTIPLEXING | features::BULK_WRITES | features::ADMIN;
    assert_eq!(info.features & required, required, "{:#b}", info.features);
    let all_known = required
        | features::CURSORS
        | features::TRANSACTIONS
        | features::SUBSCRIPTIONS
        | features::REQUEST_KEYS;
    assert_eq!(
        info.features & !all_known,
        0,
        "only features both sides support: {:#b}",
        info.features
    );
    assert_eq!(info.username, "root");
    assert_eq!(info.database, "_system");
    assert_eq!(client.database_name(), "_system");
    assert_eq!(info.idle_timeout_ms, 300_000);
    assert!(info.session_expires_at_ms > unix_millis(), "{info:?}");
    assert!(!client.session_token().is_empty());

    // Features are the intersection with what the client offers.
    let mut raw = RawConn::connect(server.addr).await;
    raw.send(
        OpCode::OpHandshake,
        1,
        &wire::HandshakeRequest {
            protocol_version: "1.0".into(),
            username: "root".into(),
            password: ROOT_PASSWORD.into(),
            client_features: features::MULTIPLEXING | features::CURSORS,
            ..Default::default()
        },
    )
    .await;
    let resp: wire::HandshakeResponse = raw.recv().await.expect("answer").decode();
    assert!(resp.success, "{resp:?}");
    assert_eq!(
        resp.server_info.expect("server_info").features & !features::CURSORS,
        features::MULTIPLEXING
    );

    // A configured frame limit is what the handshake advertises.
    let small = TestServer::start_with(|c| c.wire.max_frame_bytes = 1024 * 1024).await;
    let client = small.client().await;
    assert_eq!(client.server_info().max_frame_bytes, 1024 * 1024);
    client.ping().await.expect("ping");
}

// ---- Concurrent writers on one document ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_merges_on_one_document_lose_no_update() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let counters = client.collection("counters");
    counters
        .insert(&json!({ "_key": "hot", "base": true }))
        .await
        .unwrap();

    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let counters = counters.clone();
            tokio::spawn(async move {
                counters
                    .update("hot", &json!({ format!("f{i}"): i }))
                    .await
                    .expect("merge")
                    .rev
            })
        })
        .collect();
    let mut revs = HashSet::new();
    for task in tasks {
        revs.insert(task.await.expect("task panicked"));
    }
    assert_eq!(revs.len(), 100, "every write has its own _rev");
    let doc: Value = counters.get("hot").await.unwrap().unwrap();
    for i in 0..100 {
        assert_eq!(doc[format!("f{i}")], json!(i), "update {i} was lost: {doc}");
    }
    assert_eq!(doc["base"], json!(true));
    assert!(
        revs.contains(str_field(&doc, "_rev")),
        "the last write's _rev"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_race_has_exactly_one_winner() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let locks = client.collection("locks");
    let rev = locks
        .insert(&json!({ "_key": "leader", "holder": null }))
        .await
        .unwrap()
        .rev;

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let locks = locks.clone();
            let rev = rev.clone();
            tokio::spawn(async move {
                let result = locks
                    .update_with(
                        "leader",
                        &json!({ "holder": i }),
                        UpdateOptions::merge().if_revision(rev),
                    )
                    .await;
                (i, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task panicked") {
            (i, Ok(meta)) => winners.push((i, meta.rev)),
            (_, Err(e)) => assert!(e.is_conflict(), "a loser must see ERR_CONFLICT: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one compare-and-set wins: {winners:?}"
    );
    let (winner, winner_rev) = &winners[0];
    let doc: Value = locks.get("leader").await.unwrap().unwrap();
    assert_eq!(doc["holder"], json!(winner));
    assert_eq!(str_field(&doc, "_rev"), winner_rev);
}

/// A generated `_key` comes from the revision clock (microseconds), so a caller may
/// already have taken it with keys that look like timestamps; a keyless insert, single
/// or bulk, must then get another key rather than ERR_CONFLICT for a key it never chose.
#[tokio::test]
async fn generated_keys_do_not_collide_with_given_keys() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let events = client.collection("events");
    // Take every microsecond-timestamp key of a 50 ms window that starts 3 s from now.
    let lead = 3_000_000u64;
    let window = 50_000u64;
    let base = unix_millis() * 1000 + lead;
    for chunk in (0..window).collect::<Vec<_>>().chunks(25_000) {
        let docs: Vec<Value> = chunk
            .iter()
            .map(|d| json!({ "_key": (base + d).to_string() }))
            .collect();
        events.insert_many(&docs).await.expect("keyed bulk");
    }
    assert!(
        unix_millis() * 1000 < base,
        "setup took longer than {lead} us; the test cannot tell anything on this machine"
    );
    // Once the wall clock is inside the window, insert without keys.
    while unix_millis() * 1000 < base + 5_000 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut failures = Vec::new();
    for i in 0..20 {
        if let Err(e) = events.insert(&json!({ "i": i })).await {
            failures.push(e.to_string());
        }
    }
    if let Err(e) = events.insert_many(&[json!({}), json!({})]).await {
        failures.push(format!("bulk: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{} of 21 keyless inserts failed, first: {}",
        failures.len(),
        failures[0]
    );
}

// ---- Frame limits from the client's side ---------------------------------------------

#[tokio::test]
async fn frame_limit_is_enforced_both_ways_and_the_connection_survives() {
    let limit = 64 * 1024;
    let server = TestServer::start_with(|c| c.wire.max_frame_bytes = limit).await;
    let client = server.client().await;
    assert_eq!(client.server_info().max_frame_bytes, limit);
    let blobs = client.collection("blobs");

    // Too large to send: refused by the client before anything goes out.
    let big = json!({ "data": "x".repeat(limit as usize + 1) });
    let err = blobs.insert(&big).await.expect_err("over the limit");
    assert!(
        matches!(err, Error::MessageTooLarge { max, .. } if max == limit),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(ErrorCode::ErrMessageTooLarge));
    let many: Vec<Value> = (0..8)
        .map(|_| json!({ "data": "y".repeat(10 * 1024) }))
        .collect();
    let err = blobs
        .insert_many(&many)
        .await
        .expect_err("bulk over the limit");
    assert!(matches!(err, Error::MessageTooLarge { .. }), "{err:?}");
    assert!(!client.is_closed());

    // Each fits on its own; reading them all back at once would not.
    let mut keys = Vec::new();
    for doc in &many {
        keys.push(blobs.insert(doc).await.expect("one fits").key);
    }
    assert_eq!(count_of(&client, "blobs").await, 8);
    expect_server_error(
        blobs.get_many::<Value, _>(&keys).await,
        ErrorCode::ErrMessageTooLarge,
        &["response too large", "fewer documents"],
    );
    // The connection is still usable, and smaller reads work.
    let two: Vec<Option<Value>> = blobs.get_many(&keys[..2]).await.expect("two fit");
    assert!(two.iter().all(Option::is_some));
    client.ping().await.expect("ping");
}

/// Deleting from a collection that does not exist is an error the caller sees, not
/// "nothing was deleted".
#[tokio::test]
async fn delete_from_missing_collection_is_not_found() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let err = client
        .collection("no_such_collection")
        .delete("k")
        .await
        .expect_err("a typo in a collection name must not pass silently");
    assert!(err.is_not_found(), "{err}");
    client
        .collection("present")
        .insert(&json!({"_key": "k"}))
        .await
        .unwrap();
    assert!(!client.collection("present").delete("other").await.unwrap());
    assert!(client.collection("present").delete("k").await.unwrap());
}
