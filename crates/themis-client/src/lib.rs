//! Async Rust client for ThemisDB over the native wire protocol v1.
//!
//! One [`Client`] is one authenticated, multiplexed TCP connection: clone it freely
//! and call it from as many tasks as you like; their requests share the connection
//! and their answers are matched back by request id, in whatever order they arrive.
//!
//! # Five-minute tour
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use themis_client::{Client, UpdateOptions};
//!
//! #[derive(Serialize, Deserialize)]
//! struct User {
//!     #[serde(rename = "_key")]
//!     key: String,
//!     name: String,
//!     age: u32,
//! }
//!
//! # async fn tour() -> themis_client::Result<()> {
//! // Credentials and database in the URL; or `Client::connect_with("host:port", options)`.
//! let client = Client::connect("themis://root:secret@127.0.0.1:8766/_system").await?;
//! println!("round trip: {:?}", client.ping().await?);
//!
//! let users = client.collection("users");
//! let meta = users
//!     .insert(&User { key: "alice".into(), name: "Alice".into(), age: 30 })
//!     .await?;
//!
//! let alice: Option<User> = users.get("alice").await?;
//! assert_eq!(alice.map(|u| u.age), Some(30));
//!
//! // MERGE patch, guarded by the revision we last saw.
//! users
//!     .update_with("alice", &serde_json::json!({ "age": 31 }), UpdateOptions::merge().if_revision(meta.rev))
//!     .await?;
//!
//! // Untyped access works through serde_json::Value.
//! let keys = users
//!     .insert_many(&[serde_json::json!({ "name": "Bob" }), serde_json::json!({ "name": "Cy" })])
//!     .await?;
//! let docs: Vec<Option<serde_json::Value>> = users.get_many(&keys).await?;
//! assert_eq!(docs.len(), 2);
//!
//! match users.update("nobody", &serde_json::json!({ "x": 1 })).await {
//!     Err(e) if e.is_not_found() => println!("as expected: {e}"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! users.delete_many(&keys).await?;
//! assert!(users.delete("alice").await?);
//! # Ok(())
//! # }
//! ```
//!
//! AQL queries: bind parameters, typed results, all at once or as a stream.
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct User {
//!     name: String,
//!     age: u32,
//! }
//!
//! # async fn queries(client: themis_client::Client) -> themis_client::Result<()> {
//! let over_30: Vec<User> = client
//!     .query("FOR u IN users FILTER u.age > @min RETURN u")
//!     .bind("min", 30)?
//!     .all()
//!     .await?;
//!
//! // One batch of 500 in memory at a time, however many users there are.
//! let mut users = client
//!     .query("FOR u IN @@coll SORT u.age RETURN u")
//!     .bind_collection("coll", "users")
//!     .batch_size(500)
//!     .stream::<User>()
//!     .await?;
//! while let Some(user) = users.try_next().await? {
//!     println!("{} is {}", user.name, user.age);
//! }
//! println!("scanned {}", users.stats().documents_scanned);
//!
//! let oldest: Option<String> = client
//!     .query("FOR u IN users SORT u.age DESC LIMIT 1 RETURN u.name")
//!     .first()
//!     .await?;
//! println!("plan:\n{}", client.query("FOR u IN users RETURN u").explain().await?);
//! # let _ = (over_30, oldest);
//! # Ok(())
//! # }
//! ```
//!
//! Concurrency: clones share one pool of multiplexed connections (`docs/client.md` in
//! the repository describes the pool's settings).
//!
//! ```no_run
//! # async fn concurrent() -> themis_client::Result<()> {
//! let client = themis_client::Client::connect("127.0.0.1:8766").await?;
//! let mut tasks = Vec::new();
//! for i in 0..100 {
//!     let orders = client.collection("orders");
//!     tasks.push(tokio::spawn(async move {
//!         orders.insert(&serde_json::json!({ "n": i })).await
//!     }));
//! }
//! for task in tasks {
//!     task.await.expect("task panicked")?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Transactions: [`Client::transaction`] runs a closure in a transaction, commits it,
//! and runs it again when the commit loses a write conflict; [`Client::begin`] gives
//! you the [`Transaction`] to drive yourself.
//!
//! ```no_run
//! use serde_json::json;
//! use themis_client::TxOptions;
//!
//! # async fn transactions(client: themis_client::Client) -> themis_client::Result<()> {
//! // Retried on lost write conflicts (backoff with jitter, 10 attempts by default).
//! let order_key = client
//!     .transaction(TxOptions::default(), |tx| async move {
//!         let stock = tx.collection("stock");
//!         let item: Option<serde_json::Value> = stock.get("widget").await?;
//!         let left = item.and_then(|i| i["count"].as_u64()).unwrap_or(0);
//!         if left == 0 {
//!             tx.rollback().await?;
//!             return Ok(None);
//!         }
//!         stock.update("widget", &json!({ "count": left - 1 })).await?;
//!         let order = tx.collection("orders").insert(&json!({ "item": "widget" })).await?;
//!         Ok(Some(order.key))
//!     })
//!     .await?;
//! println!("order: {order_key:?}");
//!
//! // By hand: dropping it without commit or rollback rolls it back.
//! let tx = client.begin_with(TxOptions::serializable()).await?;
//! tx.collection("audit").insert(&json!({ "event": "checked" })).await?;
//! tx.commit().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Change subscriptions: a [`Subscription`] is a `Stream` of [`ChangeEvent`]s that
//! resumes by itself — after falling behind, or after losing its connection — with no
//! gap and no repeat.
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use themis_client::SubscribeOptions;
//!
//! # async fn subscriptions(client: themis_client::Client) -> themis_client::Result<()> {
//! let mut changes = client
//!     .subscribe(
//!         SubscribeOptions::collection("orders")
//!             .filter("doc.total > 100")
//!             .include_documents(true),
//!     )
//!     .await?;
//! while let Some(change) = changes.try_next().await? {
//!     println!("#{} {:?} {}: {:?}", change.sequence, change.kind, change.key, change.document);
//! }
//! // Ended by unsubscribe, a dropped collection, or an error; continue later with
//! // SubscribeOptions::from_sequence(changes.last_sequence()).
//! # Ok(())
//! # }
//! ```
//!
//! Admin, other databases, and raw requests:
//!
//! ```no_run
//! use themis_client::{wire, Client, ClientOptions, OpCode};
//!
//! # async fn admin() -> themis_client::Result<()> {
//! let options = ClientOptions {
//!     username: "root".into(),
//!     password: "secret".into(),
//!     ..ClientOptions::default()
//! };
//! let client = Client::connect_with("127.0.0.1:8766", options).await?;
//! client.create_database("shop").await?;
//! let shop = client.database("shop");
//! shop.create_collection("products").await?;
//! for info in shop.list_collections().await? {
//!     println!("{}", info.name);
//! }
//! let stats = shop.collection_stats("products").await?;
//! println!("{} documents, {} bytes", stats.count, stats.data_bytes);
//!
//! // Any message, untouched (a failed typed response is returned, not turned into Err).
//! let pong: wire::Pong = client
//!     .raw_request(OpCode::OpPing, &wire::Ping { timestamp_ms: 1 })
//!     .await?;
//! assert_eq!(pong.timestamp_ms, 1);
//! # Ok(())
//! # }
//! ```
//!
//! Users, roles and API keys; logging in with a key ([`Auth`] also offers JWTs and
//! mTLS client certificates):
//!
//! ```no_run
//! use themis_client::{ApiKeyOptions, Auth, Client, ClientOptions, Role, UserOptions};
//!
//! # async fn security(root: Client) -> themis_client::Result<()> {
//! root.create_user("ci", "long-random-password", &UserOptions::default().role("shop", Role::Readwrite))
//!     .await?;
//! let key = root
//!     .create_api_key(&ApiKeyOptions {
//!         username: Some("ci".into()),
//!         name: "deploy pipeline".into(),
//!         ..ApiKeyOptions::default()
//!     })
//!     .await?;
//! println!("store this now, it is not shown again: {}", key.key);
//!
//! let options = ClientOptions {
//!     auth: Auth::ApiKey(key.key.clone()),
//!     database: Some("shop".into()),
//!     ..ClientOptions::default()
//! };
//! let ci = Client::connect_with("127.0.0.1:8766", options).await?;
//! let me = ci.whoami().await?;
//! assert_eq!((me.username.as_str(), me.method.as_str()), ("ci", "API_KEY"));
//!
//! root.revoke_api_key(&key.info.id).await?;
//! root.revoke_sessions(Some("ci")).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Code map
//!
//! * [`options`]: addresses (`host:port`, `themis://` URLs with TLS and timeout
//!   settings in the query string, [`UrlParams`]), [`ClientOptions`] and [`Auth`].
//! * `tls`: the rustls connector — the configured CA file or the system's roots
//!   (`rustls-native-certs`), and the mTLS client certificate.
//! * `connection`: the multiplexed connection — reader and writer tasks, the table of
//!   pending requests (one-shot answers and bounded streams of frames), timeouts,
//!   GOAWAY and EOF handling.
//! * `pool`: the connection pool — connections per target, fair acquisition with
//!   `acquire_timeout`, the connect-storm cap, warmup, idle reaping, target health
//!   with backoff, keep-alive, the handshake and session resume, [`PoolStats`].
//! * `client`: [`Client`], `ping`, `raw_request`, and the request path: a lease from
//!   the pool per request, resending reads and keyed writes once when their
//!   connection died, pinned handles for transactions, cursors and subscriptions.
//! * `collection`: [`Collection`], typed CRUD with serde.
//! * `admin`: databases, collections, stats, indexes, users and roles, API keys,
//!   sessions.
//! * `query`: [`Query`], the AQL query builder, and [`QueryStream`], its results as
//!   a typed `Stream` fetched batch by batch.
//! * `transaction`: [`Transaction`], [`TxOptions`], and [`Client::transaction`], the
//!   retry loop for lost write conflicts.
//! * `subscription`: [`Subscription`], [`SubscribeOptions`], [`ChangeEvent`]; resuming
//!   after lag, overflow and lost connections.
//! * `retry`: [`RetryPolicy`], exponential backoff with jitter, shared by the two
//!   above.
//! * `error`: the one [`Error`] type.
//!
//! # Errors
//!
//! Every failure is an [`Error`]. Whatever the server reports is [`Error::Server`]
//! with the wire [`ErrorCode`] and the server's message verbatim; helpers such as
//! [`Error::is_not_found`], [`Error::is_conflict`] and [`Error::is_retryable`] answer
//! the usual questions. No call hangs when the connection dies: requests in flight fail
//! with [`Error::ConnectionClosed`] (or [`Error::GoAway`]), and each request is bounded
//! by [`ClientOptions::request_timeout`]. A [`Client`] reconnects by itself: the pool
//! replaces dead connections, reads and writes carrying a request key are sent again
//! once, and a [`Subscription`] resumes from its last event; transactions and cursors
//! on a dead connection fail with [`Error::StateLost`].

mod admin;
mod client;
mod collection;
mod connection;
mod error;
pub mod options;
mod pool;
mod query;
mod retry;
mod subscription;
mod tls;
mod transaction;

pub use admin::{
    ApiKeyInfo, ApiKeyOptions, CollectionInfo, CollectionStats, IndexInfo, IndexOptions, NewApiKey,
    ParseRoleError, Role, UserInfo, UserOptions, WhoAmI,
};
pub use client::Client;
pub use collection::{
    Collection, DeleteOptions, DeleteResult, DocumentMeta, UpdateMode, UpdateOptions,
};
pub use error::{Error, ErrorKind, Result};
pub use options::{
    Auth, ClientOptions, ConnectTarget, TlsOptions, UrlParams, DEFAULT_DATABASE, DEFAULT_PORT,
};
pub use pool::{PoolStats, TargetStats};
pub use query::{Query, QueryStats, QueryStream};
pub use retry::RetryPolicy;
pub use subscription::{
    ChangeEvent, ChangeKind, SubscribeOptions, Subscription, DEFAULT_SUBSCRIPTION_BUFFER,
};
pub use transaction::{IsolationLevel, Transaction, TxOptions};

/// The wire protocol crate's generated messages and codes, for
/// [`Client::raw_request`] and [`Client::admin`].
pub use themis_proto::wire;
pub use themis_proto::{ErrorCode, OpCode};
