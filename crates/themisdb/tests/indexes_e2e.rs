//! End-to-end tests of secondary indexes: the Rust client against the real server on
//! loopback, with real storage in a temp directory. Index management goes through
//! `OP_ADMIN` (create_index 17, drop_index 18, list_indexes 19); uniqueness shows up
//! on ordinary document writes as `ERR_CONFLICT`.

mod common;

use std::collections::HashMap;

use common::{expect_server_error, TestServer};
use serde_json::{json, Value};
use themis_client::{wire, Client, ErrorCode, IndexOptions};

async fn index_names(client: &Client, collection: &str) -> Vec<String> {
    client
        .list_indexes(collection)
        .await
        .expect("list_indexes")
        .into_iter()
        .map(|i| i.name)
        .collect()
}

#[tokio::test]
async fn create_list_and_drop_indexes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.create_collection("users").await.expect("collection");

    // A fresh collection lists only its primary index.
    let listed = client.list_indexes("users").await.expect("list");
    assert_eq!(listed.len(), 1);
    let primary = &listed[0];
    assert!(primary.is_primary());
    assert_eq!(
        (
            primary.name.as_str(),
            primary.fields.clone(),
            primary.unique,
            primary.sparse
        ),
        ("primary", vec!["_key".to_string()], true, false)
    );

    let by_email = client
        .create_index("users", "by_email", &["email"], IndexOptions::unique())
        .await
        .expect("create by_email");
    assert_eq!(by_email.name, "by_email");
    assert_eq!(by_email.fields, vec!["email"]);
    assert!(by_email.unique && !by_email.sparse);
    assert_eq!(by_email.kind, "persistent");
    assert!(by_email.id.is_some() && by_email.created_at_ms.is_some());
    let by_city = client
        .create_index(
            "users",
            "by_city",
            &["address.city", "age"],
            IndexOptions {
                unique: false,
                sparse: true,
            },
        )
        .await
        .expect("create by_city");
    assert!(by_city.sparse && !by_city.unique);

    let listed = client.list_indexes("users").await.expect("list");
    assert_eq!(
        listed.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["primary", "by_email", "by_city"]
    );
    assert_eq!(listed[1], by_email);
    assert_eq!(listed[2].fields, vec!["address.city", "age"]);

    // The raw answer of drop is {"dropped": name}.
    let dropped = client
        .admin(wire::admin_request::Action::DropIndex(wire::DropIndex {
            collection: "users".into(),
            name: "by_city".into(),
        }))
        .await
        .expect("drop");
    assert_eq!(dropped, json!({"dropped": "by_city"}));
    assert_eq!(index_names(&client, "users").await, ["primary", "by_email"]);
    expect_server_error(
        client.drop_index("users", "by_city").await,
        ErrorCode::ErrNotFound,
        &["index 'by_city' not found", "list_indexes"],
    );

    // Indexes go with their collection.
    client
        .drop_collection("users")
        .await
        .expect("drop collection");
    client.create_collection("users").await.expect("recreate");
    assert_eq!(index_names(&client, "users").await, ["primary"]);

    // Other databases are addressed like every admin call.
    client.create_database("shop").await.expect("database");
    let shop = client.database("shop");
    shop.create_collection("items").await.expect("items");
    shop.create_index("items", "by_sku", &["sku"], IndexOptions::unique())
        .await
        .expect("index in shop");
    assert_eq!(index_names(&shop, "items").await, ["primary", "by_sku"]);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_index_requests_get_clear_errors() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.create_collection("c").await.expect("collection");
    let none: [&str; 0] = [];
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("", vec!["a"], "the name is empty"),
        ("_hidden", vec!["a"], "reserved"),
        ("primary", vec!["a"], "reserved"),
        ("has space", vec!["a"], "invalid index name"),
        ("i", vec!["a..b"], "attribute path"),
        ("i", vec![""], "attribute path"),
        ("i", vec!["a", "a"], "listed twice"),
        (
            "i",
            vec!["a", "b", "c", "d", "e", "f", "g", "h", "i"],
            "at most 8 fields",
        ),
    ];
    for (name, fields, needle) in cases {
        expect_server_error(
            client
                .create_index("c", name, &fields, IndexOptions::default())
                .await,
            ErrorCode::ErrInvalidArgument,
            &[needle],
        );
    }
    expect_server_error(
        client
            .create_index("c", "i", &none, IndexOptions::default())
            .await,
        ErrorCode::ErrInvalidArgument,
        &["at least one field"],
    );
    expect_server_error(
        client.drop_index("c", "primary").await,
        ErrorCode::ErrInvalidArgument,
        &["cannot be dropped"],
    );
    expect_server_error(
        client
            .create_index("missing", "i", &["a"], IndexOptions::default())
            .await,
        ErrorCode::ErrNotFound,
        &["collection 'missing' not found"],
    );
    expect_server_error(
        client.list_indexes("missing").await,
        ErrorCode::ErrNotFound,
        &["'missing'"],
    );
    expect_server_error(
        client.list_indexes("").await,
        ErrorCode::ErrInvalidArgument,
        &["collection name"],
    );

    client
        .create_index("c", "by_a", &["a"], IndexOptions::default())
        .await
        .expect("create");
    expect_server_error(
        client
            .create_index("c", "by_a", &["b"], IndexOptions::default())
            .await,
        ErrorCode::ErrConflict,
        &["'by_a' already exists"],
    );
    expect_server_error(
        client
            .create_index("c", "again", &["a"], IndexOptions::default())
            .await,
        ErrorCode::ErrConflict,
        &["'by_a'", "same fields"],
    );
    // Nothing of the refused requests was created, and the connection still serves.
    assert_eq!(index_names(&client, "c").await, ["primary", "by_a"]);
    client.ping().await.expect("ping");
    server.shutdown().await;
}

#[tokio::test]
async fn unique_violations_are_conflicts_with_a_useful_message() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let users = client.create_collection("users").await.expect("collection");
    client
        .create_index("users", "by_email", &["email"], IndexOptions::unique())
        .await
        .expect("index");
    users
        .insert(&json!({"_key": "k1", "email": "a@b"}))
        .await
        .expect("first");

    let msg = expect_server_error(
        users.insert(&json!({"_key": "k2", "email": "a@b"})).await,
        ErrorCode::ErrConflict,
        &[
            "unique constraint violated",
            "index 'by_email' on users",
            "email = \"a@b\"",
            "(_key 'k1')",
        ],
    );
    assert!(!msg.is_empty());
    let err = users
        .insert(&json!({"email": "a@b"}))
        .await
        .expect_err("duplicate");
    assert!(err.is_conflict() && !err.is_retryable(), "{err:?}");

    // A bulk with a duplicate inside stores nothing.
    expect_server_error(
        users
            .insert_many(&[
                json!({"_key": "b1", "email": "x@y"}),
                json!({"_key": "b2", "email": "x@y"}),
            ])
            .await,
        ErrorCode::ErrConflict,
        &["position 1", "(_key 'b1')"],
    );
    let got: Vec<Option<Value>> = users.get_many(&["b1", "b2"]).await.expect("get");
    assert!(got.iter().all(Option::is_none), "{got:?}");

    // Updates too; a value becomes free once its holder moves on.
    users
        .insert(&json!({"_key": "k3", "email": "c@d"}))
        .await
        .expect("k3");
    expect_server_error(
        users.update("k3", &json!({"email": "a@b"})).await,
        ErrorCode::ErrConflict,
        &["by_email", "(_key 'k1')"],
    );
    users
        .update("k1", &json!({"email": "new@b"}))
        .await
        .expect("move k1");
    users
        .update("k3", &json!({"email": "a@b"}))
        .await
        .expect("take the freed value");
    assert!(users.delete("k3").await.expect("delete"));
    users
        .insert(&json!({"_key": "k4", "email": "a@b"}))
        .await
        .expect("freed by the delete");
    server.shutdown().await;
}

#[tokio::test]
async fn index_on_a_non_empty_collection() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let people = client.collection("people");
    let docs: Vec<Value> = (0..500)
        .map(|i| json!({"_key": format!("p{i}"), "email": format!("p{}@x", i % 499), "n": i}))
        .collect();
    for chunk in docs.chunks(100) {
        people.insert_many(chunk).await.expect("bulk");
    }
    // p0 and p499 share an address: a unique index is refused and leaves nothing.
    expect_server_error(
        client
            .create_index("people", "by_email", &["email"], IndexOptions::unique())
            .await,
        ErrorCode::ErrConflict,
        &[
            "cannot create unique index 'by_email'",
            "'p0'",
            "'p499'",
            "p0@x",
        ],
    );
    assert_eq!(index_names(&client, "people").await, ["primary"]);
    // Resolve the duplicate, then the same request succeeds and is enforced.
    people
        .update("p499", &json!({"email": "unique@x"}))
        .await
        .expect("fix");
    client
        .create_index("people", "by_email", &["email"], IndexOptions::unique())
        .await
        .expect("index after the fix");
    expect_server_error(
        people.insert(&json!({"email": "p7@x"})).await,
        ErrorCode::ErrConflict,
        &["(_key 'p7')"],
    );
    // A sparse unique index ignores documents without the attribute.
    client
        .create_index(
            "people",
            "by_nick",
            &["nick"],
            IndexOptions::unique().sparse(true),
        )
        .await
        .expect("sparse unique over 500 documents without nick");
    people
        .insert(&json!({"email": "a1@x"}))
        .await
        .expect("no nick, no conflict");
    people
        .insert(&json!({"email": "a2@x", "nick": "ace"}))
        .await
        .expect("nick");
    expect_server_error(
        people
            .insert(&json!({"email": "a3@x", "nick": "ace"}))
            .await,
        ErrorCode::ErrConflict,
        &["by_nick", "nick = \"ace\""],
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_cannot_break_a_unique_index() {
    const CLIENTS: usize = 32;
    const PER_CLIENT: usize = 25;
    const VALUES: usize = 50;
    let server = TestServer::start().await;
    let admin = server.client().await;
    admin
        .create_collection("tickets")
        .await
        .expect("collection");
    admin
        .create_index("tickets", "by_seat", &["seat"], IndexOptions::unique())
        .await
        .expect("index");

    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let tickets = client.collection("tickets");
            let mut stored = Vec::new();
            let mut refused = 0usize;
            for i in 0..PER_CLIENT {
                let seat = (c * 7 + i * 3) % VALUES;
                let key = format!("c{c}-{i}");
                let doc = json!({"_key": key, "seat": seat, "client": c});
                loop {
                    match tickets.insert(&doc).await {
                        Ok(_) => {
                            stored.push(key.clone());
                            break;
                        }
                        // Lost the optimistic race too often: the same request may
                        // succeed when sent again.
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => {
                            assert_eq!(e.code(), Some(ErrorCode::ErrConflict), "{e}");
                            let m = e.server_message().unwrap_or_default();
                            assert!(m.contains("by_seat"), "{m}");
                            refused += 1;
                            break;
                        }
                    }
                }
            }
            (stored, refused)
        }));
    }
    let mut stored = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (s, r) = t.await.expect("task");
        stored.extend(s);
        refused += r;
    }
    assert_eq!(stored.len() + refused, CLIENTS * PER_CLIENT);
    assert_eq!(stored.len(), VALUES, "each seat is taken exactly once");

    // Read every key any client tried: the stored ones exist, the refused ones do
    // not, and no two documents share a seat.
    let tickets = admin.collection("tickets");
    let all_keys: Vec<String> = (0..CLIENTS)
        .flat_map(|c| (0..PER_CLIENT).map(move |i| format!("c{c}-{i}")))
        .collect();
    let docs: Vec<Option<Value>> = tickets.get_many(&all_keys).await.expect("get_many");
    let mut seats: HashMap<u64, String> = HashMap::new();
    let mut present = 0;
    for (key, doc) in all_keys.iter().zip(&docs) {
        let Some(doc) = doc else { continue };
        present += 1;
        let seat = doc["seat"].as_u64().expect("seat");
        if let Some(other) = seats.insert(seat, key.clone()) {
            panic!("seat {seat} is held by both {other} and {key}");
        }
    }
    assert_eq!(present, stored.len());
    let stats = admin.collection_stats("tickets").await.expect("stats");
    assert_eq!(stats.count, stored.len() as u64);

    // Every index entry points at a live document with that value: an equality
    // lookup through the index finds exactly the one holder of each seat, and a
    // walk of the whole index in order yields every document once.
    for (seat, holder) in &seats {
        let q = admin
            .query("FOR t IN tickets FILTER t.seat == @s RETURN t")
            .bind("s", seat)
            .expect("bind");
        assert!(q
            .clone()
            .explain()
            .await
            .expect("explain")
            .contains("by_seat"));
        let found: Vec<Value> = q.all().await.expect("lookup");
        assert_eq!(found.len(), 1, "seat {seat}: {found:?}");
        assert_eq!(found[0]["_key"], json!(holder));
        assert_eq!(found[0]["seat"], json!(seat));
    }
    let walk = admin.query("FOR t IN tickets SORT t.seat LIMIT 1000 RETURN t.seat");
    assert!(walk
        .clone()
        .explain()
        .await
        .expect("explain")
        .contains("by_seat"));
    let walked: Vec<u64> = walk.all().await.expect("walk");
    assert_eq!(walked, (0..VALUES as u64).collect::<Vec<_>>());
    // The index still refuses every seat.
    for seat in 0..VALUES {
        expect_server_error(
            tickets.insert(&json!({"seat": seat})).await,
            ErrorCode::ErrConflict,
            &["by_seat"],
        );
    }
    server.shutdown().await;
}
