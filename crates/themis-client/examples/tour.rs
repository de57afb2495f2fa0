//! The README's five-minute tour. Run against a server started with
//! `THEMIS_ROOT_PASSWORD=secret cargo run --release -p themisdb -- serve`:
//!
//! ```sh
//! cargo run -p themis-client --example tour
//! ```
use serde::{Deserialize, Serialize};
use serde_json::json;
use themis_client::{Client, UpdateOptions};

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
    Ok(())
}
