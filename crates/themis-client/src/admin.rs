//! Admin calls (`OP_ADMIN`): databases, collections, stats, secondary indexes, and a
//! generic [`Client::admin`] for actions without a typed helper.
//!
//! The server answers every admin action with `AdminResponse.result`, a JSON value.
//! The typed helpers read it leniently: a list may be an array of names or of objects
//! with a `"name"`, optionally wrapped in an object holding that one array, and fields
//! a helper does not know are kept in `details` rather than rejected, so a server that
//! says more does not break an older client.
//!
//! Invariant: admin requests carry this handle's database (see [`Client::database`]).

use serde::Deserialize;
use serde_json::{Map, Value};
use themis_proto::wire::{self, admin_request::Action};
use themis_proto::OpCode;

use crate::client::Client;
use crate::collection::Collection;
use crate::error::{Error, Result};

/// One entry of [`Client::list_collections`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CollectionInfo {
    pub name: String,
    /// Everything else the server said about the collection.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// The answer of [`Client::collection_stats`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CollectionStats {
    pub name: String,
    /// Number of documents.
    #[serde(default)]
    pub count: u64,
    /// Bytes of stored document data.
    #[serde(default)]
    pub data_bytes: u64,
    /// Everything else the server reported.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

/// Options of [`Client::create_index`]. `IndexOptions::default()` is a non-unique,
/// non-sparse index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexOptions {
    /// No two documents may have equal values in all the index's fields (a write that
    /// would break it fails with `ERR_CONFLICT`).
    pub unique: bool,
    /// Leave out documents in which any indexed field is `null` or missing (so for a
    /// unique index such documents never conflict).
    pub sparse: bool,
}

impl IndexOptions {
    /// A unique, non-sparse index.
    pub fn unique() -> IndexOptions {
        IndexOptions {
            unique: true,
            sparse: false,
        }
    }

    /// Sets `sparse`.
    pub fn sparse(mut self, sparse: bool) -> IndexOptions {
        self.sparse = sparse;
        self
    }
}

fn persistent() -> String {
    "persistent".to_owned()
}

/// One index of a collection, as [`Client::list_indexes`] and
/// [`Client::create_index`] return it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IndexInfo {
    /// Index name (`"primary"` for the implicit `_key` index).
    pub name: String,
    /// The indexed attribute paths, in key order.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub sparse: bool,
    /// `"primary"` or `"persistent"`.
    #[serde(rename = "type", default = "persistent")]
    pub kind: String,
    /// Never-reused id (absent for the primary index).
    #[serde(default)]
    pub id: Option<u64>,
    /// Creation time in Unix milliseconds (absent for the primary index).
    #[serde(default)]
    pub created_at_ms: Option<u64>,
    /// Everything else the server said about the index.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl IndexInfo {
    /// Whether this is the implicit primary (`_key`) index.
    pub fn is_primary(&self) -> bool {
        self.kind == "primary"
    }
}

impl Client {
    /// Runs any admin action on this handle's database and returns the server's JSON
    /// result (`Value::Null` when it sent none).
    pub async fn admin(&self, action: Action) -> Result<Value> {
        let request = wire::AdminRequest {
            database: self.database_field(),
            action: Some(action),
            ..Default::default()
        };
        let response: wire::AdminResponse = self.call(OpCode::OpAdmin, &request).await?;
        if response.result.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&response.result)?)
    }

    /// Names of the databases this user can see.
    pub async fn list_databases(&self) -> Result<Vec<String>> {
        let result = self
            .admin(Action::ListDatabases(wire::ListDatabases {}))
            .await?;
        names_from(result, "databases")
    }

    /// Creates database `name`.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        self.admin(Action::CreateDatabase(wire::CreateDatabase {
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// Drops database `name` and everything in it.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        self.admin(Action::DropDatabase(wire::DropDatabase {
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// The collections of this handle's database.
    pub async fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let result = self
            .admin(Action::ListCollections(wire::ListCollections {}))
            .await?;
        infos_from(result, "collections")
    }

    /// Creates collection `name` in this handle's database and returns a handle to it.
    pub async fn create_collection(&self, name: &str) -> Result<Collection> {
        self.admin(Action::CreateCollection(wire::CreateCollection {
            name: name.to_owned(),
        }))
        .await?;
        Ok(self.collection(name))
    }

    /// Drops collection `name` and its documents.
    pub async fn drop_collection(&self, name: &str) -> Result<()> {
        self.admin(Action::DropCollection(wire::DropCollection {
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// Document count, data size and whatever else the server reports.
    pub async fn collection_stats(&self, name: &str) -> Result<CollectionStats> {
        let result = self
            .admin(Action::CollectionStats(wire::CollectionStats {
                name: name.to_owned(),
            }))
            .await?;
        stats_from(name, result)
    }
}

impl Client {
    /// Creates index `name` on `fields` (dotted attribute paths such as
    /// `"address.city"`, at most 8) of `collection`, filling it from the documents
    /// already stored. A taken name, an identical existing index, or (for a unique
    /// index) documents that already share values fail with `ERR_CONFLICT`.
    pub async fn create_index<S: AsRef<str>>(
        &self,
        collection: &str,
        name: &str,
        fields: &[S],
        options: IndexOptions,
    ) -> Result<IndexInfo> {
        let result = self
            .admin(Action::CreateIndex(wire::CreateIndex {
                collection: collection.to_owned(),
                name: name.to_owned(),
                fields: fields.iter().map(|f| f.as_ref().to_owned()).collect(),
                unique: options.unique,
                sparse: options.sparse,
            }))
            .await?;
        match result {
            Value::Object(_) => Ok(serde_json::from_value(result)?),
            other => Err(Error::Protocol(format!(
                "admin result for create_index should be a JSON object, found {other}"
            ))),
        }
    }

    /// Drops index `name` of `collection` (the primary index cannot be dropped).
    pub async fn drop_index(&self, collection: &str, name: &str) -> Result<()> {
        self.admin(Action::DropIndex(wire::DropIndex {
            collection: collection.to_owned(),
            name: name.to_owned(),
        }))
        .await?;
        Ok(())
    }

    /// The indexes of `collection`: the primary index first, then the secondary ones.
    pub async fn list_indexes(&self, collection: &str) -> Result<Vec<IndexInfo>> {
        let result = self
            .admin(Action::ListIndexes(wire::ListIndexes {
                collection: collection.to_owned(),
            }))
            .await?;
        the_array(result, "indexes")?
            .into_iter()
            .map(|item| match item {
                Value::Object(_) => Ok(serde_json::from_value(item)?),
                other => Err(unexpected("indexes", &other.to_string())),
            })
            .collect()
    }
}

/// The one array in `value`: `value` itself, or the field `key` (or the only array
/// field) of an object.
fn the_array(value: Value, key: &str) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        Value::Object(mut fields) => {
            if let Some(Value::Array(items)) = fields.remove(key) {
                return Ok(items);
            }
            let mut arrays = fields.into_iter().filter_map(|(_, v)| match v {
                Value::Array(items) => Some(items),
                _ => None,
            });
            match (arrays.next(), arrays.next()) {
                (Some(items), None) => Ok(items),
                _ => Err(unexpected(key, "an object without one array of entries")),
            }
        }
        other => Err(unexpected(key, &format!("{other}"))),
    }
}

fn unexpected(what: &str, found: &str) -> Error {
    Error::Protocol(format!(
        "admin result for {what} should be a JSON array of names or objects with \"name\", found {found}"
    ))
}

fn names_from(value: Value, key: &str) -> Result<Vec<String>> {
    the_array(value, key)?
        .into_iter()
        .map(|item| match item {
            Value::String(name) => Ok(name),
            Value::Object(mut fields) => match fields.remove("name") {
                Some(Value::String(name)) => Ok(name),
                _ => Err(unexpected(key, "an object without a string \"name\"")),
            },
            other => Err(unexpected(key, &other.to_string())),
        })
        .collect()
}

fn infos_from(value: Value, key: &str) -> Result<Vec<CollectionInfo>> {
    the_array(value, key)?
        .into_iter()
        .map(|item| match item {
            Value::String(name) => Ok(CollectionInfo {
                name,
                details: Map::new(),
            }),
            Value::Object(_) => Ok(serde_json::from_value(item)?),
            other => Err(unexpected(key, &other.to_string())),
        })
        .collect()
}

fn stats_from(name: &str, value: Value) -> Result<CollectionStats> {
    match value {
        Value::Object(mut fields) => {
            fields
                .entry("name")
                .or_insert_with(|| Value::String(name.to_owned()));
            Ok(serde_json::from_value(Value::Object(fields))?)
        }
        other => Err(Error::Protocol(format!(
            "admin result for collection_stats should be a JSON object, found {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn database_names_leniently() {
        assert_eq!(
            names_from(json!(["_system", "shop"]), "databases").unwrap(),
            vec!["_system", "shop"]
        );
        assert_eq!(
            names_from(json!([{"name": "a", "x": 1}, "b"]), "databases").unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            names_from(json!({"databases": ["a"]}), "databases").unwrap(),
            vec!["a"]
        );
        assert_eq!(
            names_from(json!({"result": ["a"], "n": 1}), "databases").unwrap(),
            vec!["a"]
        );
        assert!(names_from(Value::Null, "databases").unwrap().is_empty());
        assert!(matches!(
            names_from(json!(3), "databases"),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            names_from(json!([{"id": 1}]), "databases"),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn collection_infos_keep_details() {
        let got = infos_from(
            json!([{"name": "users", "count": 3, "type": "document"}, "logs"]),
            "collections",
        )
        .unwrap();
        assert_eq!(got[0].name, "users");
        assert_eq!(got[0].details.get("count"), Some(&json!(3)));
        assert_eq!(got[1].name, "logs");
        assert!(got[1].details.is_empty());
        assert!(infos_from(json!([{"count": 1}]), "collections").is_err());
    }

    #[test]
    fn index_infos() {
        let list = vec![
            json!({"name": "primary", "fields": ["_key"], "unique": true, "sparse": false, "type": "primary"}),
            json!({"name": "by_email", "id": 7, "fields": ["email"], "unique": true, "sparse": false, "created_at_ms": 5, "type": "persistent", "extra": 1}),
            json!({"name": "old"}),
        ];
        let got: Vec<IndexInfo> = list
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        assert!(got[0].is_primary());
        assert_eq!(got[0].id, None);
        assert_eq!(got[1].id, Some(7));
        assert_eq!(got[1].fields, vec!["email"]);
        assert!(!got[1].is_primary());
        assert_eq!(got[1].details.get("extra"), Some(&json!(1)));
        assert_eq!(got[2].kind, "persistent");
        assert_eq!(
            IndexOptions::unique().sparse(true),
            IndexOptions {
                unique: true,
                sparse: true
            }
        );
    }

    #[test]
    fn stats_leniently() {
        let s = stats_from(
            "users",
            json!({"name": "users", "count": 10, "data_bytes": 2048, "indexes": 2}),
        )
        .unwrap();
        assert_eq!(
            (s.name.as_str(), s.count, s.data_bytes),
            ("users", 10, 2048)
        );
        assert_eq!(s.details.get("indexes"), Some(&json!(2)));
        let s = stats_from("logs", json!({"count": 1})).unwrap();
        assert_eq!((s.name.as_str(), s.count, s.data_bytes), ("logs", 1, 0));
        assert!(stats_from("x", json!([1])).is_err());
    }
}
