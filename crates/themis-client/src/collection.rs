//! [`Collection`]: typed document CRUD with serde.
//!
//! Documents go out as JSON from any `T: Serialize` and come back into any
//! `T: DeserializeOwned` (`serde_json::Value` for untyped access). Stored documents
//! also carry `_key`, `_id` and `_rev`; a struct without those fields simply ignores
//! them, or declares `#[serde(rename = "_key")] key: String` to see them.
//!
//! A `Collection` from [`crate::Transaction::collection`] runs every operation inside
//! that transaction.
//!
//! Invariants: bulk results are positional (the `i`-th key or document answers the
//! `i`-th input); a missing document on read is `None`, never an error; an empty bulk
//! call sends nothing; every request carries the handle's transaction id, if any.

use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use themis_proto::{wire, OpCode};

use crate::client::{Client, Resend};
use crate::error::{Error, Result};

pub use themis_proto::wire::UpdateMode;

/// What a write returns: the document's key and its new revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocumentMeta {
    /// `_key`
    pub key: String,
    /// `_rev` after the write.
    pub rev: String,
}

/// Options for [`Collection::update_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOptions {
    /// `Merge` patches the given attributes (a JSON `null` removes one); `Replace`
    /// swaps the whole document.
    pub mode: UpdateMode,
    /// Apply only if the document's `_rev` is still this; otherwise `ERR_CONFLICT`.
    pub if_revision: Option<String>,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        Self::merge()
    }
}

impl UpdateOptions {
    /// Patch semantics (the default).
    pub fn merge() -> Self {
        Self {
            mode: UpdateMode::Merge,
            if_revision: None,
        }
    }

    /// Replace semantics.
    pub fn replace() -> Self {
        Self {
            mode: UpdateMode::Replace,
            if_revision: None,
        }
    }

    /// Only if the current `_rev` is `rev`.
    pub fn if_revision(mut self, rev: impl Into<String>) -> Self {
        self.if_revision = Some(rev.into());
        self
    }
}

/// Options for [`Collection::delete_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Delete only if the document's `_rev` is still this; otherwise `ERR_CONFLICT`.
    pub if_revision: Option<String>,
}

impl DeleteOptions {
    /// Only if the current `_rev` is `rev`.
    pub fn if_revision(rev: impl Into<String>) -> Self {
        Self {
            if_revision: Some(rev.into()),
        }
    }
}

/// What [`Collection::delete_many`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResult {
    pub deleted: u64,
    /// Keys that did not exist (not an error).
    pub not_found: Vec<String>,
}

/// A collection in one database. Cheap to clone; shares the client's connection.
#[derive(Debug, Clone)]
pub struct Collection {
    client: Client,
    name: Arc<str>,
    /// The transaction every operation runs in, if any.
    transaction: Option<Arc<str>>,
}

impl Collection {
    pub(crate) fn new(client: Client, name: &str) -> Self {
        Self {
            client,
            name: Arc::from(name),
            transaction: None,
        }
    }

    /// This handle, with every operation inside transaction `id`.
    pub(crate) fn in_transaction(mut self, id: Arc<str>) -> Self {
        self.transaction = Some(id);
        self
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The transaction this handle's operations run in, if it came from
    /// [`crate::Transaction::collection`].
    pub fn transaction_id(&self) -> Option<&str> {
        self.transaction.as_deref()
    }

    /// The `transaction_id` field of this handle's requests ("" = none).
    fn transaction_field(&self) -> String {
        self.transaction.as_deref().unwrap_or_default().to_owned()
    }

    /// A request key for a write from this handle (see `client`): none in a
    /// transaction.
    fn request_key(&self) -> String {
        match self.transaction {
            Some(_) => String::new(),
            None => self.client.new_request_key(),
        }
    }

    /// Sends a write built with [`Self::request_key`]: one that carries a key is sent
    /// again, with the same key, when its connection dies under it.
    async fn write<Req, Resp>(&self, opcode: OpCode, request: &Req) -> Result<Resp>
    where
        Req: prost::Message + HasRequestKey,
        Resp: themis_proto::TypedResponse,
    {
        let resend = if request.request_key().is_empty() {
            Resend::Never
        } else {
            Resend::Keyed
        };
        self.client.call_as(opcode, request, resend).await
    }

    /// The client this handle sends through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Inserts one document (which may carry `_key`; otherwise the server makes one).
    /// The collection is created on first insert when the server allows it.
    pub async fn insert<T: Serialize + ?Sized>(&self, doc: &T) -> Result<DocumentMeta> {
        let request = wire::CreateRequest {
            collection: self.name.to_string(),
            document: to_json(doc)?,
            database: self.client.database_field(),
            transaction_id: self.transaction_field(),
            request_key: self.request_key(),
            ..Default::default()
        };
        let response: wire::CreateResponse = self.write(OpCode::OpCreate, &request).await?;
        Ok(DocumentMeta {
            key: response.document_id,
            rev: response.revision,
        })
    }

    /// Inserts many documents in one request; returns their keys in input order.
    ///
    /// The whole batch must fit in one frame (the server's `max_frame_bytes`);
    /// otherwise nothing is sent and the error is [`Error::MessageTooLarge`].
    pub async fn insert_many<T: Serialize>(&self, docs: &[T]) -> Result<Vec<String>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let request = wire::CreateRequest {
            collection: self.name.to_string(),
            documents: docs.iter().map(to_json).collect::<Result<_>>()?,
            database: self.client.database_field(),
            transaction_id: self.transaction_field(),
            request_key: self.request_key(),
            ..Default::default()
        };
        let response: wire::CreateResponse = self.write(OpCode::OpCreate, &request).await?;
        if response.document_ids.len() != docs.len() {
            return Err(Error::Protocol(format!(
                "bulk insert of {} documents returned {} keys",
                docs.len(),
                response.document_ids.len()
            )));
        }
        Ok(response.document_ids)
    }

    /// Reads one document; `None` if it does not exist.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let mut docs = self.get_many(&[key]).await?;
        Ok(docs.pop().flatten())
    }

    /// Reads many documents in one request; `None` where a key does not exist.
    pub async fn get_many<T, K>(&self, keys: &[K]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned,
        K: AsRef<str>,
    {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let request = wire::ReadRequest {
            collection: self.name.to_string(),
            document_ids: keys.iter().map(|k| k.as_ref().to_owned()).collect(),
            database: self.client.database_field(),
            transaction_id: self.transaction_field(),
            ..Default::default()
        };
        let response: wire::ReadResponse = self.client.call(OpCode::OpRead, &request).await?;
        documents_from(keys.len(), response.documents)
    }

    /// Patches a document (MERGE): the given attributes are set, `null` removes one.
    pub async fn update<T: Serialize + ?Sized>(
        &self,
        key: &str,
        patch: &T,
    ) -> Result<DocumentMeta> {
        self.update_with(key, patch, UpdateOptions::merge()).await
    }

    /// Replaces a document's content (REPLACE).
    pub async fn replace<T: Serialize + ?Sized>(&self, key: &str, doc: &T) -> Result<DocumentMeta> {
        self.update_with(key, doc, UpdateOptions::replace()).await
    }

    /// Updates with explicit mode and revision check. A missing document is
    /// `ERR_NOT_FOUND` ([`Error::is_not_found`]); a revision mismatch `ERR_CONFLICT`.
    pub async fn update_with<T: Serialize + ?Sized>(
        &self,
        key: &str,
        doc: &T,
        options: UpdateOptions,
    ) -> Result<DocumentMeta> {
        let request = wire::UpdateRequest {
            collection: self.name.to_string(),
            document_id: key.to_owned(),
            document: to_json(doc)?,
            database: self.client.database_field(),
            transaction_id: self.transaction_field(),
            mode: options.mode as i32,
            if_revision: options.if_revision.unwrap_or_default(),
            request_key: self.request_key(),
            ..Default::default()
        };
        let response: wire::UpdateResponse = self.write(OpCode::OpUpdate, &request).await?;
        Ok(DocumentMeta {
            key: if response.document_id.is_empty() {
                key.to_owned()
            } else {
                response.document_id
            },
            rev: response.revision,
        })
    }

    /// Deletes one document; `false` if it did not exist.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.delete_with(key, DeleteOptions::default()).await
    }

    /// Deletes one document with a revision check; `false` if it did not exist.
    pub async fn delete_with(&self, key: &str, options: DeleteOptions) -> Result<bool> {
        // A missing document is reported in `not_found`, not as an error; an error
        // (a missing collection or database, say) is the caller's to see.
        Ok(self.delete_request(&[key], options).await?.deleted > 0)
    }

    /// Deletes many documents in one request.
    pub async fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<DeleteResult> {
        if keys.is_empty() {
            return Ok(DeleteResult::default());
        }
        self.delete_request(keys, DeleteOptions::default()).await
    }

    async fn delete_request<K: AsRef<str>>(
        &self,
        keys: &[K],
        options: DeleteOptions,
    ) -> Result<DeleteResult> {
        let request = wire::DeleteRequest {
            collection: self.name.to_string(),
            document_ids: keys.iter().map(|k| k.as_ref().to_owned()).collect(),
            database: self.client.database_field(),
            transaction_id: self.transaction_field(),
            if_revision: options.if_revision.unwrap_or_default(),
            request_key: self.request_key(),
            ..Default::default()
        };
        let response: wire::DeleteResponse = self.write(OpCode::OpDelete, &request).await?;
        Ok(DeleteResult {
            deleted: response.deleted_count,
            not_found: response.not_found,
        })
    }
}

/// The write requests that carry a request key.
trait HasRequestKey {
    fn request_key(&self) -> &str;
}

impl HasRequestKey for wire::CreateRequest {
    fn request_key(&self) -> &str {
        &self.request_key
    }
}

impl HasRequestKey for wire::UpdateRequest {
    fn request_key(&self) -> &str {
        &self.request_key
    }
}

impl HasRequestKey for wire::DeleteRequest {
    fn request_key(&self) -> &str {
        &self.request_key
    }
}

fn to_json<T: Serialize + ?Sized>(doc: &T) -> Result<Bytes> {
    Ok(Bytes::from(serde_json::to_vec(doc)?))
}

/// Positional documents of a read: empty bytes mean "missing".
fn documents_from<T: DeserializeOwned>(
    expected: usize,
    documents: Vec<Bytes>,
) -> Result<Vec<Option<T>>> {
    if documents.len() != expected {
        return Err(Error::Protocol(format!(
            "read of {expected} keys returned {} documents (the answer must be positional)",
            documents.len()
        )));
    }
    documents
        .into_iter()
        .map(|doc| {
            if doc.is_empty() {
                Ok(None)
            } else {
                Ok(Some(serde_json::from_slice(&doc)?))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct User {
        #[serde(rename = "_key")]
        key: String,
        name: String,
    }

    #[test]
    fn positional_documents() {
        let docs = vec![
            Bytes::from_static(br#"{"_key":"a","_id":"users/a","_rev":"1","name":"Ann"}"#),
            Bytes::new(),
            Bytes::from_static(br#"{"_key":"c","name":"Cy"}"#),
        ];
        let got: Vec<Option<User>> = documents_from(3, docs).unwrap();
        assert_eq!(
            got,
            vec![
                Some(User {
                    key: "a".into(),
                    name: "Ann".into()
                }),
                None,
                Some(User {
                    key: "c".into(),
                    name: "Cy".into()
                }),
            ]
        );
    }

    #[test]
    fn wrong_count_is_protocol_error_and_bad_json_is_serialization_error() {
        let err = documents_from::<serde_json::Value>(2, vec![Bytes::new()]).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)));
        let err =
            documents_from::<User>(1, vec![Bytes::from_static(br#"{"name":1}"#)]).unwrap_err();
        assert!(matches!(err, Error::Serialization(_)));
    }

    #[test]
    fn options_builders() {
        assert_eq!(UpdateOptions::default().mode, UpdateMode::Merge);
        let o = UpdateOptions::replace().if_revision("3-x");
        assert_eq!(o.mode, UpdateMode::Replace);
        assert_eq!(o.if_revision.as_deref(), Some("3-x"));
        assert_eq!(
            DeleteOptions::if_revision("9").if_revision.as_deref(),
            Some("9")
        );
    }
}
