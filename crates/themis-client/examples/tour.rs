//! The README's five-minute tour. Run against a server started with
//! `THEMIS_ROOT_PASSWORD=secret cargo run --release -p themisdb -- serve`:
//!
//! ```sh
//! cargo run -p themis-client --example tour
//! ```
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use themis_client::{Client, SubscribeOptions, TxOptions, UpdateOptions};

#[derive(Serialize, Deserialize, Debug)]
struct User {
    name: String,
    email: String,
    age: u32,
}

#[tokio::main]
async fn main() -> themis_client::Result<()> {
    let url = std::env::var("THEMIS_URL")
        .unwrap_or_else(|_| "themis://root:secret@127.0.0.1:8766/_system".into());
    // One handle, cheap to clone; all clones share one multiplexed connection.
    let client = Client::connect(&url).await?;

    let users = client.collection("users"); // created on first insert
    let ada = User {
        name: "Ada".into(),
        email: "ada@example.org".into(),
        age: 36,
    };
    let meta = users.insert(&ada).await?;
    let read: Option<User> = users.get(&meta.key).await?;
    println!("{meta:?} -> {read:?}");

    // Merge a patch, but only if nobody changed the document since we wrote it.
    let patch = json!({ "age": 37 });
    users
        .update_with(
            &meta.key,
            &patch,
            UpdateOptions::merge().if_revision(&meta.rev),
        )
        .await?;

    // Bulk insert, multi-key read (missing keys come back as None), delete.
    let keys = users
        .insert_many(&[json!({ "name": "Grace" }), json!({ "name": "Linus" })])
        .await?;
    let docs: Vec<Option<serde_json::Value>> = users
        .get_many(&[keys[0].as_str(), "nope", keys[1].as_str()])
        .await?;
    assert!(docs[1].is_none());
    users.delete(&keys[0]).await?;

    // Databases and collections.
    if !client.list_databases().await?.contains(&"shop".to_string()) {
        client.create_database("shop").await?;
    }
    let shop = client.database("shop");
    shop.collection("orders")
        .insert(&json!({ "total": 42 }))
        .await?;
    println!("{:?}", shop.collection_stats("orders").await?);
    println!("round trip: {:?}", client.ping().await?);

    // A transaction: all or nothing. The closure runs again if another writer
    // changed the counter between our read and our commit.
    let visits = client
        .transaction(TxOptions::default(), |tx| async move {
            let counters = tx.collection("counters");
            let current: Option<serde_json::Value> = counters.get("tour").await?;
            let next = current.as_ref().and_then(|c| c["n"].as_u64()).unwrap_or(0) + 1;
            match current {
                Some(_) => counters.update("tour", &json!({ "n": next })).await?,
                None => {
                    counters
                        .insert(&json!({ "_key": "tour", "n": next }))
                        .await?
                }
            };
            Ok(next)
        })
        .await?;
    println!("this tour ran {visits} time(s)");

    // A change subscription: every committed write to `users` from now on.
    let mut changes = client
        .subscribe(SubscribeOptions::collection("users").include_documents(true))
        .await?;
    let barbara = User {
        name: "Barbara".into(),
        email: "barbara@example.org".into(),
        age: 41,
    };
    users.insert(&barbara).await?;
    if let Some(change) = changes.try_next().await? {
        let user: Option<User> = change.document_as()?;
        println!(
            "#{} {:?} {}: {user:?}",
            change.sequence, change.kind, change.key
        );
    }
    changes.unsubscribe().await?;
    Ok(())
}
