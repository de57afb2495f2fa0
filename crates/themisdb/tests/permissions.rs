//! The permission matrix: every opcode and admin action, for users holding each role
//! on database A and nothing on database B, sent as raw frames with the request's
//! `database` set explicitly. The expected outcome of each cell comes from one table
//! ([`need`] + [`expected`]), not from per-cell hand-written assertions; every cell
//! that disagrees is listed (user, op, database) before the test fails.
//!
//! Also: a user of A can neither read nor subscribe to B, a handshake naming B (or a
//! database that does not exist) is refused, grants reach an already-open connection
//! at its next request while reductions end the user's sessions (a subscribed
//! connection gets GOAWAY by itself), and a superuser is allowed everywhere.

mod common;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Frame, RawConn, TestServer, ROOT_PASSWORD};
use prost::Message;
use serde_json::{json, Value};
use themis_proto::wire::{self, admin_request::Action, ErrorCode, OpCode};
use themis_proto::TypedResponse;
use themis_server::config::{Config, SyncMode};

const DB_A: &str = "perm_a";
const DB_B: &str = "perm_b";
const COLL: &str = "c";
const USER_PASSWORD: &str = "user-password-1";

// ---------------------------------------------------------------------------
// Raw connection helpers
// ---------------------------------------------------------------------------

/// A raw connection that numbers its requests and skips OP_EVENT frames while it
/// waits for an answer.
struct Conn {
    raw: RawConn,
    next_id: u64,
    user: String,
}

impl Conn {
    async fn login(addr: SocketAddr, user: &str, password: &str) -> Conn {
        let (conn, resp) = Conn::login_to(addr, user, password, "").await;
        assert!(resp.success, "{user} logs in: {resp:?}");
        conn
    }

    /// Handshake with `database` as the connection's default (empty: `_system`).
    async fn login_to(
        addr: SocketAddr,
        user: &str,
        password: &str,
        database: &str,
    ) -> (Conn, wire::HandshakeResponse) {
        let mut raw = RawConn::connect(addr).await;
        let req = wire::HandshakeRequest {
            protocol_version: "1.0".into(),
            client_name: "permissions-test".into(),
            username: user.into(),
            password: password.into(),
            database: database.into(),
            ..Default::default()
        };
        raw.send(OpCode::OpHandshake, 1, &req).await;
        let f = raw.recv().await.expect("handshake answer");
        assert_eq!(f.op(), OpCode::OpHandshake, "{f:?}");
        let resp: wire::HandshakeResponse = f.decode();
        let conn = Conn {
            raw,
            next_id: 100,
            user: user.into(),
        };
        (conn, resp)
    }

    /// Sends `msg` and returns the frame answering it (events are skipped).
    async fn frame<M: Message>(&mut self, op: OpCode, msg: &M) -> Frame {
        self.next_id += 1;
        let id = self.next_id;
        self.raw.send(op, id, msg).await;
        loop {
            let f = self.raw.recv().await.unwrap_or_else(|| {
                panic!(
                    "{}: connection closed while waiting for the answer to {op:?}",
                    self.user
                )
            });
            if f.op() == OpCode::OpEvent {
                continue;
            }
            assert_eq!(
                f.request_id, id,
                "answer to {op:?} carries another id: {f:?}"
            );
            return f;
        }
    }

    /// The typed response of `op`; `Err` when the server answered with another opcode.
    async fn call<M: Message, R: TypedResponse>(
        &mut self,
        op: OpCode,
        msg: &M,
    ) -> Result<R, String> {
        let f = self.frame(op, msg).await;
        if f.op() != op {
            let detail = if f.op() == OpCode::OpError {
                format!("{:?}", f.error())
            } else {
                format!("{f:?}")
            };
            return Err(format!(
                "{op:?} answered with {:?} instead of its own response type: {detail}",
                f.op()
            ));
        }
        Ok(f.decode())
    }

    async fn admin_raw(&mut self, database: &str, action: Action) -> wire::AdminResponse {
        let req = wire::AdminRequest {
            database: database.into(),
            action: Some(action),
            ..Default::default()
        };
        self.call(OpCode::OpAdmin, &req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.user))
    }

    /// An admin action that must succeed; its JSON result.
    async fn admin(&mut self, database: &str, action: Action) -> Value {
        let shown = format!("{action:?}");
        let resp = self.admin_raw(database, action).await;
        assert!(resp.success, "{}: {shown} failed: {resp:?}", self.user);
        if resp.result.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&resp.result).expect("admin result is JSON")
        }
    }

    /// The connection's session was revoked: the server sends GOAWAY
    /// "session_revoked" (request_id 0) and closes by itself. A request is sent anyway
    /// (a write error is ignored: the server may be gone already); if it raced in
    /// before the GOAWAY, its answer is OP_ERROR ERR_UNAUTHENTICATED. Reads until EOF:
    /// nothing is served. Events before the GOAWAY are fine.
    async fn expect_cut_off(&mut self, why: &str) {
        let who = format!("{} ({why})", self.user);
        self.next_id += 1;
        let id = self.next_id;
        let req = admin_req("", Action::WhoAmI(wire::WhoAmI {}));
        if let Err(e) = self.raw.try_send(OpCode::OpAdmin, id, &req).await {
            eprintln!("{who}: write after the revocation failed ({e}): fine");
        }
        let mut goaway = false;
        let mut refused = false;
        loop {
            let f = match self.raw.try_recv_within(Duration::from_secs(10)).await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    panic!("{who}: neither GOAWAY nor close within 10 s")
                }
                Err(e) => {
                    eprintln!("{who}: read ended with {e}");
                    break;
                }
            };
            match f.op() {
                OpCode::OpGoaway => {
                    assert!(!goaway, "{who}: a second GOAWAY: {f:?}");
                    assert_eq!(f.request_id, 0, "{who}: {f:?}");
                    let g: wire::GoAway = f.decode();
                    assert_eq!(g.reason, "session_revoked", "{who}: {g:?}");
                    goaway = true;
                }
                OpCode::OpError => {
                    assert!(!refused, "{who}: a second OP_ERROR: {f:?}");
                    assert_eq!(f.request_id, id, "{who}: {f:?}");
                    let err = f.error();
                    assert_eq!(
                        err.code,
                        ErrorCode::ErrUnauthenticated as i32,
                        "{who}: {err:?}"
                    );
                    refused = true;
                }
                OpCode::OpEvent => assert!(!goaway, "{who}: an event after GOAWAY: {f:?}"),
                _ => panic!("{who}: served after its session was revoked: {f:?}"),
            }
        }
        assert!(goaway, "{who}: closed without GOAWAY \"session_revoked\"");
    }

    async fn read(&mut self, database: &str, key: &str) -> wire::ReadResponse {
        let req = wire::ReadRequest {
            collection: COLL.into(),
            document_ids: vec![key.into()],
            database: database.into(),
            ..Default::default()
        };
        self.call(OpCode::OpRead, &req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.user))
    }

    async fn create(&mut self, database: &str, doc: Value) -> wire::CreateResponse {
        let req = wire::CreateRequest {
            collection: COLL.into(),
            document: json_bytes(&doc),
            database: database.into(),
            ..Default::default()
        };
        self.call(OpCode::OpCreate, &req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.user))
    }
}

fn json_bytes(v: &Value) -> bytes::Bytes {
    serde_json::to_vec(v).unwrap().into()
}

fn fast_config(cfg: &mut Config) {
    // Durability is not what is tested here: keep the many small writes cheap.
    cfg.storage.sync = SyncMode::Never;
}

/// Asserts that `resp` is a permission denial naming `user` and every fragment of
/// `names`.
#[track_caller]
fn assert_denied<R: TypedResponse + fmt::Debug>(resp: &R, user: &str, names: &[&str]) {
    assert!(!resp.success(), "expected a denial, got {resp:?}");
    let err = resp
        .error()
        .unwrap_or_else(|| panic!("no error in {resp:?}"));
    assert_eq!(
        err.code,
        ErrorCode::ErrPermissionDenied as i32,
        "expected ERR_PERMISSION_DENIED: {err:?}"
    );
    assert!(
        err.message.contains(user),
        "denial does not name user {user}: {err:?}"
    );
    for name in names {
        assert!(
            err.message.contains(name),
            "denial does not name {name}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The role table
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Perm {
    Read,
    Write,
    Admin,
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Any logged-in user (results may be narrowed).
    Anyone,
    /// A permission on the request's database.
    On(Perm),
    Superuser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Read,
    Update,
    Delete,
    QueryRead,
    QueryWrite,
    ExplainWrite,
    BeginTx,
    TxWrite,
    TxRead,
    CommitOwnTx,
    RollbackOwnTx,
    Subscribe,
    CursorNext,
    ListCollections,
    CollectionStats,
    ListIndexes,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    CreateDatabase,
    DropDatabase,
    ListDatabases,
    GrantRole,
    CreateUser,
}

const OPS: [Op; 26] = [
    Op::Create,
    Op::Read,
    Op::Update,
    Op::Delete,
    Op::QueryRead,
    Op::QueryWrite,
    Op::ExplainWrite,
    Op::BeginTx,
    Op::TxWrite,
    Op::TxRead,
    Op::CommitOwnTx,
    Op::RollbackOwnTx,
    Op::Subscribe,
    Op::CursorNext,
    Op::ListCollections,
    Op::CollectionStats,
    Op::ListIndexes,
    Op::CreateCollection,
    Op::DropCollection,
    Op::CreateIndex,
    Op::DropIndex,
    Op::CreateDatabase,
    Op::DropDatabase,
    Op::ListDatabases,
    Op::GrantRole,
    Op::CreateUser,
];

/// The role table: what each operation needs on the request's database.
fn need(op: Op) -> Need {
    use Perm::*;
    match op {
        Op::Read
        | Op::QueryRead
        | Op::BeginTx
        | Op::TxRead
        | Op::CommitOwnTx
        | Op::RollbackOwnTx
        | Op::Subscribe
        | Op::CursorNext
        | Op::ListCollections
        | Op::CollectionStats
        | Op::ListIndexes => Need::On(Read),
        Op::Create | Op::Update | Op::Delete | Op::QueryWrite | Op::ExplainWrite | Op::TxWrite => {
            Need::On(Write)
        }
        Op::CreateCollection
        | Op::DropCollection
        | Op::CreateIndex
        | Op::DropIndex
        | Op::GrantRole => Need::On(Admin),
        Op::CreateDatabase | Op::DropDatabase | Op::CreateUser => Need::Superuser,
        Op::ListDatabases => Need::Anyone,
    }
}

#[derive(Debug, Clone, Copy)]
struct User {
    name: &'static str,
    /// Role on database A (none on B).
    role_on_a: Option<(Perm, &'static str)>,
    superuser: bool,
}

const USERS: [User; 4] = [
    User {
        name: "ro_a",
        role_on_a: Some((Perm::Read, "readonly")),
        superuser: false,
    },
    User {
        name: "rw_a",
        role_on_a: Some((Perm::Write, "readwrite")),
        superuser: false,
    },
    User {
        name: "admin_a",
        role_on_a: Some((Perm::Admin, "admin")),
        superuser: false,
    },
    User {
        name: "su",
        role_on_a: None,
        superuser: true,
    },
];

/// Whether `user` may do `op` on `db`, from the table.
fn expected(user: &User, op: Op, db: &str) -> bool {
    if user.superuser {
        return true;
    }
    match need(op) {
        Need::Anyone => true,
        Need::Superuser => false,
        Need::On(p) => db == DB_A && user.role_on_a.is_some_and(|(held, _)| held >= p),
    }
}

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

fn tag(db: &str) -> &'static str {
    if db == DB_A {
        "a"
    } else {
        "b"
    }
}

/// As root: databases A and B, each with collection `c` holding documents and an
/// index, plus what each user's cells act on; the users of [`USERS`] and `dummy`.
async fn setup(addr: SocketAddr) -> Conn {
    let mut root = Conn::login(addr, "root", ROOT_PASSWORD).await;
    for db in [DB_A, DB_B] {
        root.admin(
            "",
            Action::CreateDatabase(wire::CreateDatabase { name: db.into() }),
        )
        .await;
        root.admin(
            db,
            Action::CreateCollection(wire::CreateCollection { name: COLL.into() }),
        )
        .await;
        let mut docs = vec![json!({"_key": "k1", "v": 1}), json!({"_key": "k2", "v": 2})];
        for u in USERS {
            docs.push(json!({"_key": format!("del_{}", u.name), "v": 3}));
            docs.push(json!({"_key": format!("upd_{}", u.name), "v": 4}));
        }
        let req = wire::CreateRequest {
            collection: COLL.into(),
            documents: docs.iter().map(json_bytes).collect(),
            database: db.into(),
            ..Default::default()
        };
        let resp: wire::CreateResponse = root.call(OpCode::OpCreate, &req).await.unwrap();
        assert!(resp.success, "{resp:?}");
        root.admin(
            db,
            Action::CreateIndex(wire::CreateIndex {
                collection: COLL.into(),
                name: "idx_v".into(),
                fields: vec!["v".into()],
                ..Default::default()
            }),
        )
        .await;
        for u in USERS {
            root.admin(
                db,
                Action::CreateCollection(wire::CreateCollection {
                    name: format!("drop_{}", u.name),
                }),
            )
            .await;
            root.admin(
                db,
                Action::CreateIndex(wire::CreateIndex {
                    collection: COLL.into(),
                    name: format!("dix_{}", u.name),
                    fields: vec![format!("g_{}", u.name)],
                    ..Default::default()
                }),
            )
            .await;
        }
    }
    // What the superuser's drop_database cells drop.
    for db in [DB_A, DB_B] {
        root.admin(
            "",
            Action::CreateDatabase(wire::CreateDatabase {
                name: format!("victim_su_{}", tag(db)),
            }),
        )
        .await;
    }
    for u in USERS {
        let roles = u
            .role_on_a
            .map(|(_, role)| {
                vec![wire::RoleGrant {
                    database: DB_A.into(),
                    role: role.into(),
                }]
            })
            .unwrap_or_default();
        create_user(&mut root, u.name, u.superuser, roles).await;
    }
    create_user(&mut root, "dummy", false, vec![]).await;
    root
}

async fn create_user(root: &mut Conn, name: &str, superuser: bool, roles: Vec<wire::RoleGrant>) {
    root.admin(
        "",
        Action::CreateUser(wire::CreateUser {
            name: name.into(),
            password: USER_PASSWORD.into(),
            superuser,
            roles,
        }),
    )
    .await;
}

// ---------------------------------------------------------------------------
// The operations
// ---------------------------------------------------------------------------

/// How a cell came out.
enum Outcome {
    Allowed,
    Denied(wire::Error),
    /// Neither: the request failed for another reason, or the server broke the
    /// contract (wrong response type, wrong result).
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Allowed => f.write_str("allowed"),
            Outcome::Denied(e) => write!(f, "ERR_PERMISSION_DENIED ({:?})", e.message),
            Outcome::Failed(why) => write!(f, "failure: {why}"),
        }
    }
}

/// One request whose failure ends the cell.
async fn step<M: Message, R: TypedResponse + fmt::Debug>(
    c: &mut Conn,
    op: OpCode,
    msg: &M,
) -> Result<R, Outcome> {
    let resp: R = c.call(op, msg).await.map_err(Outcome::Failed)?;
    if resp.success() {
        return Ok(resp);
    }
    match resp.error() {
        Some(e) if e.code == ErrorCode::ErrPermissionDenied as i32 => {
            Err(Outcome::Denied(e.clone()))
        }
        _ => Err(Outcome::Failed(format!("{op:?} failed: {resp:?}"))),
    }
}

fn admin_req(db: &str, action: Action) -> wire::AdminRequest {
    wire::AdminRequest {
        database: db.into(),
        action: Some(action),
        ..Default::default()
    }
}

fn query_req(db: &str, aql: &str) -> wire::QueryRequest {
    wire::QueryRequest {
        aql_query: aql.into(),
        database: db.into(),
        ..Default::default()
    }
}

async fn begin(c: &mut Conn, db: &str) -> Result<String, Outcome> {
    let req = wire::BeginTxRequest {
        database: db.into(),
        ..Default::default()
    };
    let resp: wire::BeginTxResponse = step(c, OpCode::OpBeginTx, &req).await?;
    Ok(resp.transaction_id)
}

async fn rollback(c: &mut Conn, tx: &str) -> Result<(), Outcome> {
    let req = wire::RollbackTxRequest {
        transaction_id: tx.into(),
        ..Default::default()
    };
    step::<_, wire::RollbackTxResponse>(c, OpCode::OpRollbackTx, &req).await?;
    Ok(())
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Outcome> {
    if ok {
        Ok(())
    } else {
        Err(Outcome::Failed(what()))
    }
}

async fn run_op(c: &mut Conn, user: &User, op: Op, db: &str) -> Outcome {
    match op_steps(c, user, op, db).await {
        Ok(()) => Outcome::Allowed,
        Err(outcome) => outcome,
    }
}

async fn op_steps(c: &mut Conn, user: &User, op: Op, db: &str) -> Result<(), Outcome> {
    let u = user.name;
    match op {
        Op::Create => {
            let req = wire::CreateRequest {
                collection: COLL.into(),
                document: json_bytes(&json!({"by": u})),
                database: db.into(),
                ..Default::default()
            };
            step::<_, wire::CreateResponse>(c, OpCode::OpCreate, &req).await?;
        }
        Op::Read => {
            let req = wire::ReadRequest {
                collection: COLL.into(),
                document_ids: vec!["k1".into()],
                database: db.into(),
                ..Default::default()
            };
            let r: wire::ReadResponse = step(c, OpCode::OpRead, &req).await?;
            check(r.documents.first().is_some_and(|d| !d.is_empty()), || {
                format!("READ k1 returned no document: {r:?}")
            })?;
        }
        Op::Update => {
            let req = wire::UpdateRequest {
                collection: COLL.into(),
                document_id: format!("upd_{u}"),
                document: json_bytes(&json!({"touched_by": u})),
                database: db.into(),
                ..Default::default()
            };
            step::<_, wire::UpdateResponse>(c, OpCode::OpUpdate, &req).await?;
        }
        Op::Delete => {
            let req = wire::DeleteRequest {
                collection: COLL.into(),
                document_ids: vec![format!("del_{u}")],
                database: db.into(),
                ..Default::default()
            };
            let r: wire::DeleteResponse = step(c, OpCode::OpDelete, &req).await?;
            check(r.deleted_count == 1, || {
                format!("DELETE deleted nothing: {r:?}")
            })?;
        }
        Op::QueryRead => {
            let req = query_req(db, "FOR d IN c RETURN d");
            let r: wire::QueryResponse = step(c, OpCode::OpQuery, &req).await?;
            check(!r.results.is_empty(), || {
                format!("query returned no rows: {r:?}")
            })?;
        }
        Op::QueryWrite => {
            let req = query_req(db, "INSERT {} INTO c");
            step::<_, wire::QueryResponse>(c, OpCode::OpQuery, &req).await?;
        }
        Op::ExplainWrite => {
            let mut req = query_req(db, "INSERT {} INTO c");
            req.explain = true;
            step::<_, wire::QueryResponse>(c, OpCode::OpQuery, &req).await?;
        }
        Op::BeginTx => {
            let tx = begin(c, db).await?;
            rollback(c, &tx).await?;
        }
        Op::TxWrite => {
            let tx = begin(c, db).await?;
            let req = wire::CreateRequest {
                collection: COLL.into(),
                document: json_bytes(&json!({"in_tx_by": u})),
                transaction_id: tx.clone(),
                database: db.into(),
                ..Default::default()
            };
            let created = step::<_, wire::CreateResponse>(c, OpCode::OpCreate, &req).await;
            // The transaction is this connection's own: rolling it back is allowed
            // whatever happened to the write.
            let rolled_back = rollback(c, &tx).await;
            created?;
            rolled_back?;
        }
        Op::TxRead => {
            let tx = begin(c, db).await?;
            let req = wire::ReadRequest {
                collection: COLL.into(),
                document_ids: vec!["k1".into()],
                transaction_id: tx.clone(),
                database: db.into(),
                ..Default::default()
            };
            let read = step::<_, wire::ReadResponse>(c, OpCode::OpRead, &req).await;
            let rolled_back = rollback(c, &tx).await;
            let r = read?;
            rolled_back?;
            check(r.documents.first().is_some_and(|d| !d.is_empty()), || {
                format!("READ k1 in a transaction returned no document: {r:?}")
            })?;
        }
        Op::CommitOwnTx => {
            let tx = begin(c, db).await?;
            let req = wire::CommitTxRequest {
                transaction_id: tx,
                ..Default::default()
            };
            step::<_, wire::CommitTxResponse>(c, OpCode::OpCommitTx, &req).await?;
        }
        Op::RollbackOwnTx => {
            let tx = begin(c, db).await?;
            rollback(c, &tx).await?;
        }
        Op::Subscribe => {
            let req = wire::SubscribeRequest {
                collection: COLL.into(),
                database: db.into(),
                ..Default::default()
            };
            let r: wire::SubscribeResponse = step(c, OpCode::OpSubscribe, &req).await?;
            let req = wire::UnsubscribeRequest {
                subscription_id: r.subscription_id,
                ..Default::default()
            };
            step::<_, wire::UnsubscribeResponse>(c, OpCode::OpUnsubscribe, &req).await?;
        }
        Op::CursorNext => {
            let mut req = query_req(db, "FOR d IN c RETURN d");
            req.batch_size = 1;
            let r: wire::QueryResponse = step(c, OpCode::OpQuery, &req).await?;
            check(r.has_more && !r.cursor_id.is_empty(), || {
                format!("a batch_size 1 query over several documents left no cursor: {r:?}")
            })?;
            let req = wire::CursorNextRequest {
                cursor_id: r.cursor_id.clone(),
                batch_size: 1,
                ..Default::default()
            };
            let next: wire::QueryResponse = step(c, OpCode::OpCursorNext, &req).await?;
            check(next.results.len() == 1, || {
                format!("CURSOR_NEXT returned no row: {next:?}")
            })?;
            if next.has_more {
                let req = wire::CursorCloseRequest {
                    cursor_id: r.cursor_id,
                    ..Default::default()
                };
                step::<_, wire::CursorCloseResponse>(c, OpCode::OpCursorClose, &req).await?;
            }
        }
        Op::ListCollections => {
            let action = Action::ListCollections(wire::ListCollections {});
            let r: wire::AdminResponse = step(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
            let text = String::from_utf8_lossy(&r.result).to_string();
            check(text.contains("\"c\""), || {
                format!("list_collections lacks collection c: {text}")
            })?;
        }
        Op::CollectionStats => {
            let action = Action::CollectionStats(wire::CollectionStats { name: COLL.into() });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
        Op::ListIndexes => {
            let action = Action::ListIndexes(wire::ListIndexes {
                collection: COLL.into(),
            });
            let r: wire::AdminResponse = step(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
            let text = String::from_utf8_lossy(&r.result).to_string();
            check(text.contains("idx_v"), || {
                format!("list_indexes lacks idx_v: {text}")
            })?;
        }
        Op::CreateCollection => {
            let action = Action::CreateCollection(wire::CreateCollection {
                name: format!("new_{u}"),
            });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
        Op::DropCollection => {
            let action = Action::DropCollection(wire::DropCollection {
                name: format!("drop_{u}"),
            });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
        Op::CreateIndex => {
            let action = Action::CreateIndex(wire::CreateIndex {
                collection: COLL.into(),
                name: format!("ix_{u}"),
                fields: vec![format!("f_{u}")],
                ..Default::default()
            });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
        Op::DropIndex => {
            let action = Action::DropIndex(wire::DropIndex {
                collection: COLL.into(),
                name: format!("dix_{u}"),
            });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
        Op::CreateDatabase => {
            let action = Action::CreateDatabase(wire::CreateDatabase {
                name: format!("new_{u}_{}", tag(db)),
            });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
        Op::DropDatabase => {
            let action = Action::DropDatabase(wire::DropDatabase {
                name: format!("victim_{u}_{}", tag(db)),
            });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
        Op::ListDatabases => {
            let action = Action::ListDatabases(wire::ListDatabases {});
            let r: wire::AdminResponse = step(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
            let listed: Vec<String> = serde_json::from_slice(&r.result)
                .map_err(|e| Outcome::Failed(format!("list_databases result: {e}")))?;
            if user.superuser {
                check(
                    listed.iter().any(|d| d == DB_A) && listed.iter().any(|d| d == DB_B),
                    || format!("a superuser's list_databases lacks A or B: {listed:?}"),
                )?;
            } else {
                check(listed == [DB_A], || {
                    format!("list_databases must show only {DB_A}: {listed:?}")
                })?;
            }
        }
        Op::GrantRole => {
            let action = Action::GrantRole(wire::GrantRole {
                username: "dummy".into(),
                database: db.into(),
                role: "readonly".into(),
            });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
        Op::CreateUser => {
            let action = Action::CreateUser(wire::CreateUser {
                name: format!("nu_{u}_{}", tag(db)),
                password: "another-password".into(),
                ..Default::default()
            });
            step::<_, wire::AdminResponse>(c, OpCode::OpAdmin, &admin_req(db, action)).await?;
        }
    }
    Ok(())
}

/// Compares a cell's outcome with the table; the mismatch, if any.
fn judge(user: &User, op: Op, db: &str, outcome: &Outcome) -> Option<String> {
    let want = expected(user, op, db);
    let cell = format!("cell (user {}, op {op:?}, db {db})", user.name);
    match (want, outcome) {
        (true, Outcome::Allowed) => None,
        (false, Outcome::Denied(err)) => {
            // A denial names the user, and the database when the need is on one.
            let mut missing = Vec::new();
            if !err.message.contains(user.name) {
                missing.push(user.name.to_string());
            }
            if matches!(need(op), Need::On(_)) && !err.message.contains(db) {
                missing.push(db.to_string());
            }
            if missing.is_empty() {
                None
            } else {
                Some(format!(
                    "{cell}: denied, but the message does not name {missing:?}: {:?}",
                    err.message
                ))
            }
        }
        (true, got) => Some(format!("{cell}: expected allowed, got {got}")),
        (false, got) => Some(format!("{cell}: expected ERR_PERMISSION_DENIED, got {got}")),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn permission_matrix_of_every_operation_role_and_database() {
    let server = TestServer::start_with(fast_config).await;
    let mut root = setup(server.addr).await;

    let mut mismatches = Vec::new();
    let mut cells = 0;
    for user in &USERS {
        let mut conn = Conn::login(server.addr, user.name, USER_PASSWORD).await;
        for op in OPS {
            for db in [DB_A, DB_B] {
                let outcome = run_op(&mut conn, user, op, db).await;
                cells += 1;
                if let Some(m) = judge(user, op, db, &outcome) {
                    eprintln!("MISMATCH {m}");
                    mismatches.push(m);
                }
            }
        }
    }
    assert_eq!(cells, USERS.len() * OPS.len() * 2);
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells disagree with the role table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );

    // The grants that went through are real: dummy now holds readonly on A (from
    // admin_a) and on B (from su).
    let users = root.admin("", Action::ListUsers(wire::ListUsers {})).await;
    let dummy = users
        .as_array()
        .and_then(|a| a.iter().find(|u| u["name"] == "dummy"))
        .cloned()
        .expect("dummy listed");
    assert_eq!(dummy["roles"][DB_A], "readonly", "{dummy}");
    assert_eq!(dummy["roles"][DB_B], "readonly", "{dummy}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_user_of_a_can_neither_read_nor_subscribe_to_b() {
    let server = TestServer::start_with(fast_config).await;
    let mut root = setup(server.addr).await;
    // Default database A: an explicit B in the request still counts.
    let (mut ro, hs) = Conn::login_to(server.addr, "ro_a", USER_PASSWORD, DB_A).await;
    assert!(hs.success, "{hs:?}");

    let denied = ro.read(DB_B, "k1").await;
    assert_denied(&denied, "ro_a", &[DB_B]);
    assert!(
        denied.documents.iter().all(|d| d.is_empty()),
        "a denied READ leaked a document: {denied:?}"
    );
    // The same read in the connection's own database works.
    let own = ro.read("", "k1").await;
    assert!(own.success && !own.documents[0].is_empty(), "{own:?}");

    let query: wire::QueryResponse = ro
        .call(OpCode::OpQuery, &query_req(DB_B, "FOR d IN c RETURN d"))
        .await
        .unwrap();
    assert_denied(&query, "ro_a", &[DB_B]);
    assert!(query.results.is_empty(), "{query:?}");

    // SUBSCRIBE to B is refused; to A it works.
    let sub_b_id = ro.next_id + 1;
    let sub_b: wire::SubscribeResponse = ro
        .call(
            OpCode::OpSubscribe,
            &wire::SubscribeRequest {
                collection: COLL.into(),
                database: DB_B.into(),
                include_documents: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_denied(&sub_b, "ro_a", &[DB_B]);
    assert!(sub_b.subscription_id.is_empty(), "{sub_b:?}");
    let sub_a_id = ro.next_id + 1;
    let sub_a: wire::SubscribeResponse = ro
        .call(
            OpCode::OpSubscribe,
            &wire::SubscribeRequest {
                collection: COLL.into(),
                database: DB_A.into(),
                include_documents: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(sub_a.success, "{sub_a:?}");

    // A write to B, then one to A: the first event ro_a sees is A's, and nothing
    // about B ever reaches it.
    assert!(root.create(DB_B, json!({"_key": "after_b"})).await.success);
    assert!(root.create(DB_A, json!({"_key": "after_a"})).await.success);
    loop {
        let f = ro.raw.recv().await.expect("an event");
        assert_eq!(f.op(), OpCode::OpEvent, "{f:?}");
        assert_ne!(
            f.request_id, sub_b_id,
            "the denied subscription delivered {f:?}"
        );
        let ev: wire::ChangeEvent = f.decode();
        assert_ne!(ev.document_id, "after_b", "ro_a saw a change in B: {ev:?}");
        assert_eq!(f.request_id, sub_a_id, "{ev:?}");
        if ev.document_id == "after_a" {
            break;
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn handshake_naming_a_database_without_a_role_is_denied() {
    let server = TestServer::start_with(fast_config).await;
    let _root = setup(server.addr).await;

    let (_, resp) = Conn::login_to(server.addr, "ro_a", USER_PASSWORD, DB_B).await;
    assert!(resp.session_token.is_empty(), "{resp:?}");
    assert_denied(&resp, "ro_a", &[DB_B]);
    let (_, resp) = Conn::login_to(server.addr, "admin_a", USER_PASSWORD, DB_B).await;
    assert_denied(&resp, "admin_a", &[DB_B]);
    // A database that does not exist is refused the same way: no existence probe.
    let (_, resp) = Conn::login_to(server.addr, "ro_a", USER_PASSWORD, "perm_nowhere").await;
    assert!(resp.session_token.is_empty(), "{resp:?}");
    assert_denied(&resp, "ro_a", &["perm_nowhere"]);
    let (_, exists) = Conn::login_to(server.addr, "admin_a", USER_PASSWORD, DB_B).await;
    let (_, missing) = Conn::login_to(server.addr, "admin_a", USER_PASSWORD, "perm_nowhere").await;
    let (exists, missing) = (exists.error().unwrap(), missing.error().unwrap());
    assert_eq!(
        exists.message.replace(DB_B, "X"),
        missing.message.replace("perm_nowhere", "X"),
        "an existing and a missing database are told apart"
    );

    // Its own database, and the default `_system`, are fine.
    let (_, resp) = Conn::login_to(server.addr, "ro_a", USER_PASSWORD, DB_A).await;
    assert!(resp.success, "{resp:?}");
    assert_eq!(resp.server_info.unwrap().database, DB_A);
    let (_, resp) = Conn::login_to(server.addr, "ro_a", USER_PASSWORD, "").await;
    assert!(resp.success, "{resp:?}");
    assert_eq!(resp.server_info.unwrap().database, "_system");
    // A superuser may name any database.
    let (_, resp) = Conn::login_to(server.addr, "su", USER_PASSWORD, DB_B).await;
    assert!(resp.success, "{resp:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn role_changes_reach_an_open_connection_at_its_next_request() {
    let server = TestServer::start_with(fast_config).await;
    let mut root = setup(server.addr).await;
    create_user(&mut root, "late", false, vec![]).await;
    let mut late = Conn::login(server.addr, "late", USER_PASSWORD).await;

    assert_denied(&late.read(DB_A, "k1").await, "late", &[DB_A]);

    let grant = |role: &str| {
        Action::GrantRole(wire::GrantRole {
            username: "late".into(),
            database: DB_A.into(),
            role: role.into(),
        })
    };
    // Grants only add: they apply to the open connection at its next request.
    root.admin("", grant("readonly")).await;
    let r = late.read(DB_A, "k1").await;
    assert!(r.success, "readonly granted, READ still refused: {r:?}");
    assert_denied(&late.create(DB_A, json!({"x": 1})).await, "late", &[DB_A]);

    root.admin("", grant("readwrite")).await;
    let c = late.create(DB_A, json!({"x": 2})).await;
    assert!(c.success, "readwrite granted, CREATE still refused: {c:?}");

    // A weaker role takes something away: the session ends; a new login has the
    // reduced rights.
    root.admin("", grant("readonly")).await;
    late.expect_cut_off("readwrite lowered to readonly").await;
    let mut late = Conn::login(server.addr, "late", USER_PASSWORD).await;
    let r = late.read(DB_A, "k1").await;
    assert!(r.success, "readonly, READ refused: {r:?}");
    assert_denied(&late.create(DB_A, json!({"x": 3})).await, "late", &[DB_A]);

    // Revoked: the same.
    root.admin(
        "",
        Action::RevokeRole(wire::RevokeRole {
            username: "late".into(),
            database: DB_A.into(),
        }),
    )
    .await;
    late.expect_cut_off("role revoked").await;
    let mut late = Conn::login(server.addr, "late", USER_PASSWORD).await;
    assert_denied(&late.read(DB_A, "k1").await, "late", &[DB_A]);
    assert_denied(&late.create(DB_A, json!({"x": 4})).await, "late", &[DB_A]);

    // Made a superuser: everything, everywhere, on the same connection.
    let set_su = |on: bool| {
        Action::SetSuperuser(wire::SetSuperuser {
            username: "late".into(),
            superuser: on,
        })
    };
    root.admin("", set_su(true)).await;
    let r = late.read(DB_B, "k1").await;
    assert!(r.success, "superuser, READ on B refused: {r:?}");
    let made = late
        .admin_raw(
            "",
            Action::CreateDatabase(wire::CreateDatabase {
                name: "made_by_late".into(),
            }),
        )
        .await;
    assert!(made.success, "superuser, create_database refused: {made:?}");
    // No longer one: cut off, and a new login is an ordinary user again.
    root.admin("", set_su(false)).await;
    late.expect_cut_off("superuser taken away").await;
    let mut late = Conn::login(server.addr, "late", USER_PASSWORD).await;
    assert_denied(&late.read(DB_B, "k1").await, "late", &[DB_B]);
    let made = late
        .admin_raw(
            "",
            Action::CreateDatabase(wire::CreateDatabase {
                name: "made_by_late_2".into(),
            }),
        )
        .await;
    assert_denied(&made, "late", &[]);
    // Root's own connection was never touched.
    assert!(root.read(DB_A, "k1").await.success);
    server.shutdown().await;
}

#[tokio::test]
async fn revoking_a_role_ends_a_subscribed_connection_by_itself() {
    let server = TestServer::start_with(fast_config).await;
    let mut root = setup(server.addr).await;
    create_user(
        &mut root,
        "watcher",
        false,
        vec![wire::RoleGrant {
            database: DB_A.into(),
            role: "readonly".into(),
        }],
    )
    .await;
    let mut watcher = Conn::login(server.addr, "watcher", USER_PASSWORD).await;
    let sub: wire::SubscribeResponse = watcher
        .call(
            OpCode::OpSubscribe,
            &wire::SubscribeRequest {
                collection: COLL.into(),
                database: DB_A.into(),
                include_documents: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(sub.success, "{sub:?}");
    // An open cursor.
    let mut req = query_req(DB_A, "FOR d IN c RETURN d");
    req.batch_size = 1;
    let q: wire::QueryResponse = watcher.call(OpCode::OpQuery, &req).await.unwrap();
    assert!(q.success && q.has_more && !q.cursor_id.is_empty(), "{q:?}");
    // Served while the role lasts (events may come first).
    assert!(root.create(DB_A, json!({"_key": "before"})).await.success);
    let next: wire::QueryResponse = watcher
        .call(
            OpCode::OpCursorNext,
            &wire::CursorNextRequest {
                cursor_id: q.cursor_id.clone(),
                batch_size: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(next.success && next.results.len() == 1, "{next:?}");

    root.admin(
        "",
        Action::RevokeRole(wire::RevokeRole {
            username: "watcher".into(),
            database: DB_A.into(),
        }),
    )
    .await;
    // The test sends nothing: the server says GOAWAY by itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let f = match watcher.raw.try_recv_within(left).await {
            Ok(Some(f)) => f,
            Ok(None) => panic!("closed without GOAWAY"),
            Err(e) => panic!("no GOAWAY within 5 s of the revocation: {e}"),
        };
        match f.op() {
            OpCode::OpEvent => continue,
            OpCode::OpGoaway => {
                assert_eq!(f.request_id, 0, "{f:?}");
                let g: wire::GoAway = f.decode();
                assert_eq!(g.reason, "session_revoked", "{g:?}");
                break;
            }
            _ => panic!("expected GOAWAY, got {f:?}"),
        }
    }
    // Then the close; nothing more is delivered, and the cursor cannot be read.
    match watcher.raw.try_recv_within(Duration::from_secs(10)).await {
        Ok(None) => {}
        Ok(Some(f)) => panic!("a frame after GOAWAY: {f:?}"),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::TimedOut,
            "no close after GOAWAY"
        ),
    }
    let sent = watcher
        .raw
        .try_send(
            OpCode::OpCursorNext,
            999,
            &wire::CursorNextRequest {
                cursor_id: q.cursor_id.clone(),
                batch_size: 1,
                ..Default::default()
            },
        )
        .await;
    match watcher.raw.try_recv_within(Duration::from_secs(10)).await {
        Ok(None) => {}
        Ok(Some(f)) => panic!("the cursor was read after the revocation ({sent:?}): {f:?}"),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
    }
    // A write to A reaches nobody and the root is still served.
    assert!(root.create(DB_A, json!({"_key": "after"})).await.success);
    // A new login has no rights on A.
    let mut again = Conn::login(server.addr, "watcher", USER_PASSWORD).await;
    assert_denied(&again.read(DB_A, "k1").await, "watcher", &[DB_A]);
    server.shutdown().await;
}
