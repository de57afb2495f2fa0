//! The executor: a pull-based pipeline of nodes over rows of slot values.
//!
//! Every node answers `next()` with at most one row, pulling from its input only as
//! needed, so `FOR … FILTER … RETURN` over a huge collection holds one document at a
//! time. Only the operations that must see everything — SORT (unless an index serves
//! it), COLLECT, RETURN DISTINCT, subquery results and a write query's results before
//! its commit — materialise, and they charge a per-query memory budget that fails
//! with a clear error instead of growing without bound.
//!
//! Read queries run on one storage snapshot. A query with data-modification
//! operations runs all its writes in one storage transaction (atomic), reading
//! collections from the snapshot taken when it began; a commit that loses an
//! optimistic race reruns the whole query (bounded).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use themis_storage::{
    CollectionHandle, DocIter, DocumentStore, IndexRange, Pending, QuerySnapshot, StorageError,
    Transaction, UpdateMode, WriteTx,
};

use crate::ast;
use crate::compile::{
    self, Access, CCollect, CExpr, CKey, CModify, CollectInto, IndexAccess, ModifyKind, Plan,
    Source, Step,
};
use crate::error::{ErrorKind, QueryError};
use crate::{functions, parser, value};

/// Limits and switches for one query.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Memory the materialising operations of one query may hold.
    pub memory_limit_bytes: usize,
    /// Wall-clock limit for producing results (checked while rows are produced).
    pub max_runtime: Option<Duration>,
    /// INSERT into a missing collection creates it.
    pub auto_create_collections: bool,
    /// Largest array a range `a..b` may produce.
    pub max_range_elements: usize,
    /// Set to stop the query (its connection closed); checked while rows are produced.
    pub cancel: Option<Arc<AtomicBool>>,
    /// The user running the query, for `CURRENT_USER()`.
    pub user: Option<String>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 256 * 1024 * 1024,
            max_runtime: Some(Duration::from_secs(300)),
            auto_create_collections: true,
            max_range_elements: 10_000_000,
            cancel: None,
            user: None,
        }
    }
}

/// What a query did, for `QueryStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub documents_scanned: u64,
    pub index_lookups: u64,
    pub writes_executed: u64,
    pub rows_returned: u64,
    pub execution_time_us: u64,
}

/// A parsed query with its bind parameters, not yet bound to storage.
#[derive(Debug, Clone)]
pub struct Prepared {
    text: String,
    query: ast::Query,
    bind_vars: BTreeMap<String, Value>,
    writes: bool,
}

impl Prepared {
    /// Parses `text`. Errors carry the query text, so they display with a caret.
    pub fn new(text: &str, bind_vars: BTreeMap<String, Value>) -> Result<Self, QueryError> {
        let query = parser::parse(text).map_err(|e| e.in_query(text))?;
        let writes = has_writes(&query);
        Ok(Self {
            text: text.to_string(),
            query,
            bind_vars,
            writes,
        })
    }

    /// Whether the query modifies data (then it must run with [`run_write`]).
    pub fn is_write(&self) -> bool {
        self.writes
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn compile(&self, db: &str, snap: &QuerySnapshot) -> Result<Plan, QueryError> {
        compile::compile(&self.query, &self.bind_vars, db, snap).map_err(|e| e.in_query(&self.text))
    }
}

fn has_writes(q: &ast::Query) -> bool {
    fn expr(e: &ast::Expr) -> bool {
        use ast::ExprKind as K;
        match &e.kind {
            K::Subquery(q) => has_writes(q),
            K::Array(xs) | K::Call { args: xs, .. } => xs.iter().any(expr),
            K::Object(ps) => ps.iter().any(|(_, v)| expr(v)),
            K::Attribute(b, _) | K::Flatten { base: b, .. } | K::Unary(_, b) => expr(b),
            K::Index(a, b) | K::Binary(_, a, b) | K::Range(a, b) => expr(a) || expr(b),
            K::Ternary {
                cond,
                then,
                otherwise,
            } => expr(cond) || then.as_deref().map(expr).unwrap_or(false) || expr(otherwise),
            K::Expand {
                base,
                filter,
                limit,
                projection,
            } => {
                expr(base)
                    || [filter, limit, projection]
                        .iter()
                        .any(|x| x.as_deref().map(expr).unwrap_or(false))
            }
            _ => false,
        }
    }
    q.ops.iter().any(|op| match &op.kind {
        ast::OpKind::Insert { .. }
        | ast::OpKind::Update { .. }
        | ast::OpKind::Replace { .. }
        | ast::OpKind::Remove { .. }
        | ast::OpKind::Upsert { .. } => true,
        ast::OpKind::For { source, .. } => expr(source),
        ast::OpKind::Let { expr: e, .. } | ast::OpKind::Filter(e) => expr(e),
        ast::OpKind::Return { expr: e, .. } => expr(e),
        _ => false,
    })
}

/// The plan of `prepared` as text: one line per step, naming the index each `FOR`
/// uses. Runs nothing.
pub fn explain(store: &DocumentStore, db: &str, prepared: &Prepared) -> Result<String, QueryError> {
    let snap = store.snapshot().map_err(storage_error)?;
    let plan = prepared.compile(db, &snap)?;
    let mut out = String::new();
    for (i, line) in plan.explain.iter().enumerate() {
        out.push_str(&format!("{:>2} {line}\n", i + 1));
    }
    Ok(out)
}

/// A running read query: pull results one at a time or in batches.
pub struct ReadCursor {
    snap: QuerySnapshot,
    root: Box<dyn Node>,
    ret: CExpr,
    distinct: Option<HashSet<String>>,
    db: String,
    opts: QueryOptions,
    mem: Mem,
    stats: Stats,
    started: Instant,
    done: bool,
    /// A result computed ahead by [`ReadCursor::has_more`].
    peeked: Option<Value>,
    /// Time spent producing results so far: the time limit counts this, not the time
    /// the cursor waits for its client.
    busy: Duration,
    /// Rows produced, across calls, for the periodic limit checks.
    ticks: u32,
}

/// Starts a read-only query on a fresh snapshot.
pub fn run_read(
    store: &DocumentStore,
    db: &str,
    prepared: &Prepared,
    opts: &QueryOptions,
) -> Result<ReadCursor, QueryError> {
    let snap = store.snapshot().map_err(storage_error)?;
    run_read_in(snap, db, prepared, opts)
}

/// Starts a read-only query on `snap` (a transaction's view, say:
/// [`Transaction::view`]).
pub fn run_read_in(
    snap: QuerySnapshot,
    db: &str,
    prepared: &Prepared,
    opts: &QueryOptions,
) -> Result<ReadCursor, QueryError> {
    if prepared.is_write() {
        return Err(QueryError::new(
            ErrorKind::Semantic,
            "this query modifies data: run it as a write query",
        ));
    }
    let started = Instant::now();
    let plan = prepared.compile(db, &snap)?;
    let Some((ret, distinct)) = plan.ret.clone() else {
        return Err(QueryError::new(
            ErrorKind::Semantic,
            "query has no RETURN: a read query must end with RETURN",
        ));
    };
    let seed = vec![Value::Null; plan.slots];
    let root = build(&Arc::new(plan), seed);
    Ok(ReadCursor {
        snap,
        root,
        ret,
        distinct: distinct.then(HashSet::new),
        db: db.to_string(),
        opts: opts.clone(),
        mem: Mem::new(opts.memory_limit_bytes),
        stats: Stats::default(),
        started,
        done: false,
        peeked: None,
        busy: Duration::ZERO,
        ticks: 0,
    })
}

impl ReadCursor {
    /// The next result, or `None` when the query is exhausted.
    pub fn next_value(&mut self) -> Result<Option<Value>, QueryError> {
        if let Some(v) = self.peeked.take() {
            return Ok(Some(v));
        }
        if self.done {
            return Ok(None);
        }
        let call_started = Instant::now();
        let deadline = self
            .opts
            .max_runtime
            .map(|d| call_started + d.saturating_sub(self.busy));
        let mut cx = Cx {
            snap: Some(&self.snap),
            db: &self.db,
            stats: &mut self.stats,
            mem: &mut self.mem,
            opts: &self.opts,
            deadline,
            ticks: self.ticks,
            write: None,
        };
        let result = Self::produce(&mut self.root, &self.ret, &mut self.distinct, &mut cx);
        self.ticks = cx.ticks;
        self.busy += call_started.elapsed();
        if matches!(result, Ok(None)) {
            self.done = true;
        }
        result
    }

    fn produce(
        root: &mut Box<dyn Node>,
        ret: &CExpr,
        distinct: &mut Option<HashSet<String>>,
        cx: &mut Cx,
    ) -> Result<Option<Value>, QueryError> {
        loop {
            let Some(row) = root.next(cx)? else {
                break Ok(None);
            };
            let v = eval(ret, &row, cx)?;
            if let Some(seen) = distinct {
                let key = value::hash_key(&v);
                if seen.contains(&key) {
                    continue;
                }
                cx.mem.charge(key.len() + 32)?;
                seen.insert(key);
            }
            cx.stats.rows_returned += 1;
            break Ok(Some(v));
        }
    }

    /// Up to `n` results; fewer only when the query is exhausted.
    pub fn next_batch(&mut self, n: usize) -> Result<Vec<Value>, QueryError> {
        let mut out = Vec::with_capacity(n.min(4096));
        while out.len() < n {
            match self.next_value()? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        self.stats.execution_time_us = self.started.elapsed().as_micros() as u64;
        Ok(out)
    }

    /// Whether another result follows (computing it ahead if needed), so a batch that
    /// ends exactly at the last result says so.
    pub fn has_more(&mut self) -> Result<bool, QueryError> {
        if self.peeked.is_none() && !self.done {
            self.peeked = self.next_value()?;
        }
        Ok(self.peeked.is_some())
    }

    /// What the query did so far; rows computed ahead by [`Self::has_more`] and not
    /// yet delivered are not counted as returned.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.rows_returned -= u64::from(self.peeked.is_some());
        s
    }
}

/// Runs a data-modification query to completion in one transaction and returns its
/// results, its stats and the pending durability of its commit.
pub fn run_write(
    store: &DocumentStore,
    db: &str,
    prepared: &Prepared,
    opts: &QueryOptions,
) -> Result<(Vec<Value>, Stats, Pending<()>), QueryError> {
    const ATTEMPTS: usize = 16;
    let started = Instant::now();
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match write_once(store, db, prepared, opts, started) {
            Ok(done) => return Ok(done),
            Err(Attempt::Retry(e)) => last = Some(e),
            Err(Attempt::Fail(e)) => return Err(e),
        }
    }
    Err(QueryError::new(
        ErrorKind::Contended,
        format!(
            "the query's writes conflicted with concurrent writes {ATTEMPTS} times ({}): retry the query",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

enum Attempt {
    Retry(StorageError),
    Fail(QueryError),
}

fn write_once(
    store: &DocumentStore,
    db: &str,
    prepared: &Prepared,
    opts: &QueryOptions,
    started: Instant,
) -> Result<(Vec<Value>, Stats, Pending<()>), Attempt> {
    // The transaction begins before the snapshot the query reads: a commit landing
    // between the two changes what the query read after the transaction began, so
    // writing over it conflicts at commit (and the query reruns) instead of silently
    // overwriting it.
    let mut tx = store
        .begin_write()
        .map_err(|e| Attempt::Fail(storage_error(e)))?;
    let snap = store
        .snapshot()
        .map_err(|e| Attempt::Fail(storage_error(e)))?;
    let (results, mut stats) =
        execute_write(&snap, &mut tx, db, prepared, opts, started).map_err(Attempt::Fail)?;
    match tx.commit() {
        Ok(pending) => {
            stats.execution_time_us = started.elapsed().as_micros() as u64;
            Ok((results, stats, pending))
        }
        Err(StorageError::Contended(m)) => Err(Attempt::Retry(StorageError::Contended(m))),
        Err(e) => Err(Attempt::Fail(storage_error(e))),
    }
}

/// Runs a data-modification query as one statement of the interactive transaction
/// `tx`: it reads the transaction's view and writes into the transaction (nothing is
/// committed; a failure after a write aborts the transaction). Returns all results.
pub fn run_write_in(
    tx: &mut Transaction,
    prepared: &Prepared,
    opts: &QueryOptions,
) -> Result<(Vec<Value>, Stats), QueryError> {
    let started = Instant::now();
    let snap = tx.view().map_err(storage_error)?;
    let db = tx.database().to_string();
    let (results, mut stats) =
        tx.statement(|w| execute_write(&snap, w, &db, prepared, opts, started))?;
    stats.execution_time_us = started.elapsed().as_micros() as u64;
    Ok((results, stats))
}

/// Runs a data-modification query to its end: reads from `snap`, writes into `tx`.
fn execute_write(
    snap: &QuerySnapshot,
    tx: &mut WriteTx,
    db: &str,
    prepared: &Prepared,
    opts: &QueryOptions,
    started: Instant,
) -> Result<(Vec<Value>, Stats), QueryError> {
    let plan = prepared.compile(db, snap)?;
    let ret = plan.ret.clone();
    let seed = vec![Value::Null; plan.slots];
    let mut root = build(&Arc::new(plan), seed);
    let mut stats = Stats::default();
    let mut mem = Mem::new(opts.memory_limit_bytes);
    let mut results = Vec::new();
    let mut seen = HashSet::new();
    let mut cx = Cx {
        snap: Some(snap),
        db,
        stats: &mut stats,
        mem: &mut mem,
        opts,
        deadline: opts.max_runtime.map(|d| started + d),
        ticks: 0,
        write: Some(tx),
    };
    while let Some(row) = root.next(&mut cx)? {
        if let Some((ret, distinct)) = &ret {
            let v = eval(ret, &row, &mut cx)?;
            if *distinct && !seen.insert(value::hash_key(&v)) {
                continue;
            }
            cx.mem.charge(approx_size(&v))?;
            cx.stats.rows_returned += 1;
            results.push(v);
        }
    }
    Ok((results, stats))
}

impl From<StorageError> for QueryError {
    fn from(e: StorageError) -> Self {
        storage_error(e)
    }
}

pub(crate) fn storage_error(e: StorageError) -> QueryError {
    let kind = match &e {
        StorageError::NotFound(_) => ErrorKind::NotFound,
        StorageError::Conflict(_) => ErrorKind::Conflict,
        StorageError::Contended(_) => ErrorKind::Contended,
        StorageError::InvalidArgument(_) => ErrorKind::Runtime,
        StorageError::Internal(_) | StorageError::Unavailable(_) => ErrorKind::Internal,
        StorageError::Transaction(_) => ErrorKind::Transaction,
    };
    QueryError::new(kind, e.message().to_string())
}

// ---- memory budget ---------------------------------------------------------------

struct Mem {
    used: usize,
    limit: usize,
}

impl Mem {
    fn new(limit: usize) -> Self {
        Self { used: 0, limit }
    }

    fn charge(&mut self, bytes: usize) -> Result<(), QueryError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(QueryError::new(
                ErrorKind::Limit,
                format!(
                    "query exceeded its memory limit of {} MiB while sorting, grouping or collecting results: add a LIMIT, filter earlier, use an index for the SORT, or raise the limit",
                    self.limit / (1024 * 1024)
                ),
            ));
        }
        Ok(())
    }

    fn release(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Fails if `bytes` more would exceed the limit, without holding them: for a
    /// value that lives only while one row is evaluated.
    fn check(&self, bytes: usize) -> Result<(), QueryError> {
        let mut probe = Mem {
            used: self.used,
            limit: self.limit,
        };
        probe.charge(bytes)
    }
}

/// A cheap upper estimate of a value's memory.
fn approx_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 16,
        Value::Number(_) => 24,
        Value::String(s) => 32 + s.len(),
        Value::Array(xs) => 32 + xs.iter().map(approx_size).sum::<usize>(),
        Value::Object(m) => {
            48 + m
                .iter()
                .map(|(k, v)| 32 + k.len() + approx_size(v))
                .sum::<usize>()
        }
    }
}

fn row_size(row: &Row) -> usize {
    row.iter().map(approx_size).sum()
}

// ---- nodes --------------------------------------------------------------------------

type Row = Vec<Value>;

struct Cx<'a> {
    /// `None` for a standalone expression ([`eval_standalone`]), which its compiler
    /// made sure reads no storage.
    snap: Option<&'a QuerySnapshot>,
    db: &'a str,
    stats: &'a mut Stats,
    mem: &'a mut Mem,
    opts: &'a QueryOptions,
    deadline: Option<Instant>,
    ticks: u32,
    write: Option<&'a mut WriteTx>,
}

impl<'a> Cx<'a> {
    fn snap(&self) -> Result<&'a QuerySnapshot, QueryError> {
        self.snap.ok_or_else(|| {
            QueryError::new(
                ErrorKind::Internal,
                "this expression cannot read the database (it was compiled without storage)",
            )
        })
    }

    /// Checks the time limit every few hundred rows.
    fn tick(&mut self) -> Result<(), QueryError> {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks % 256 == 0 {
            if let Some(cancel) = &self.opts.cancel {
                if cancel.load(Ordering::Relaxed) {
                    return Err(QueryError::new(
                        ErrorKind::Runtime,
                        "query cancelled: its connection closed",
                    ));
                }
            }
            if let Some(d) = self.deadline {
                if Instant::now() > d {
                    let limit = self.opts.max_runtime.unwrap_or_default();
                    let shown = if limit < Duration::from_secs(1) {
                        format!("{}ms", limit.as_millis())
                    } else {
                        format!("{}s", limit.as_secs_f64())
                    };
                    return Err(QueryError::new(
                        ErrorKind::Limit,
                        format!(
                            "query exceeded its time limit of {shown}: narrow it with filters, indexes or LIMIT, or raise [query] max_runtime"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

trait Node: Send {
    fn next(&mut self, cx: &mut Cx) -> Result<Option<Row>, QueryError>;
}

fn build(plan: &Arc<Plan>, seed: Row) -> Box<dyn Node> {
    let mut node: Box<dyn Node> = Box::new(Start {
        row: Some(seed.clone()),
    });
    for step in &plan.steps {
        node = match step {
            Step::For { slot, source } => Box::new(ForNode {
                input: node,
                slot: *slot,
                source: source.clone(),
                current: None,
            }),
            Step::Let { slot, expr } => Box::new(LetNode {
                input: node,
                slot: *slot,
                expr: expr.clone(),
            }),
            Step::Filter(expr) => Box::new(FilterNode {
                input: node,
                expr: expr.clone(),
            }),
            Step::Sort(keys) => Box::new(SortNode {
                input: node,
                keys: keys.clone(),
                sorted: None,
            }),
            Step::Limit { offset, count } => Box::new(LimitNode {
                input: node,
                offset: offset.clone(),
                count: count.clone(),
                bounds: None,
                seen: 0,
                returned: 0,
            }),
            Step::Collect(c) => Box::new(CollectNode {
                input: node,
                spec: (**c).clone(),
                seed: seed.clone(),
                out: None,
            }),
            Step::Modify(m) => Box::new(ModifyNode {
                input: node,
                spec: (**m).clone(),
                handle: None,
            }),
        };
    }
    node
}

struct Start {
    row: Option<Row>,
}

impl Node for Start {
    fn next(&mut self, _cx: &mut Cx) -> Result<Option<Row>, QueryError> {
        Ok(self.row.take())
    }
}

enum SourceIter {
    /// Storage scans read in turn: one for a full or index scan, one per value of an
    /// indexed `IN`.
    Docs(VecDeque<DocIter>),
    Values(std::vec::IntoIter<Value>),
}

struct ForNode {
    input: Box<dyn Node>,
    slot: usize,
    source: Source,
    current: Option<(Row, SourceIter)>,
}

fn parse_doc(bytes: &[u8]) -> Result<Value, QueryError> {
    serde_json::from_slice(bytes)
        .map_err(|e| QueryError::runtime(format!("a stored document is not valid JSON: {e}")))
}

/// A document storage handed the query: counted as scanned, then parsed.
fn read_doc(cx: &mut Cx, item: themis_storage::Result<bytes::Bytes>) -> Result<Value, QueryError> {
    cx.stats.documents_scanned += 1;
    parse_doc(&item.map_err(storage_error)?)
}

impl ForNode {
    fn open(&self, row: &Row, cx: &mut Cx) -> Result<SourceIter, QueryError> {
        match &self.source {
            Source::Expr(e) => match eval(e, row, cx)? {
                Value::Array(items) => Ok(SourceIter::Values(items.into_iter())),
                other => Err(QueryError::runtime(format!(
                    "FOR needs a collection or an array to iterate over; this expression gave a value of type {}",
                    value::typename(&other)
                ))),
            },
            Source::Collection { handle, access } => match access {
                Access::Scan => Ok(SourceIter::Docs(VecDeque::from([cx.snap()?.scan(handle)]))),
                Access::Primary(keys) => {
                    let keys = match eval(keys, row, cx)? {
                        Value::Array(ks) => ks,
                        other => vec![other],
                    };
                    let mut docs = Vec::new();
                    let mut seen = HashSet::new();
                    for k in keys {
                        let Value::String(k) = k else { continue };
                        if !seen.insert(k.clone()) || themis_storage::validate_key(&k).is_err() {
                            continue;
                        }
                        cx.stats.index_lookups += 1;
                        if let Some(bytes) = cx.snap()?.get(handle, &k).map_err(storage_error)? {
                            docs.push(read_doc(cx, Ok(bytes))?);
                        }
                    }
                    Ok(SourceIter::Values(docs.into_iter()))
                }
                Access::Index(access) => {
                    let IndexAccess {
                        index,
                        eq,
                        in_values,
                        lower,
                        upper,
                        reverse,
                    } = &**access;
                    let mut eq_values = Vec::with_capacity(eq.len());
                    for e in eq {
                        eq_values.push(eval(e, row, cx)?);
                    }
                    let lower = match lower {
                        Some((e, inc)) => Some((eval(e, row, cx)?, *inc)),
                        None => None,
                    };
                    let upper = match upper {
                        Some((e, inc)) => Some((eval(e, row, cx)?, *inc)),
                        None => None,
                    };
                    match in_values {
                        None => {
                            cx.stats.index_lookups += 1;
                            let range = IndexRange {
                                eq: eq_values,
                                lower,
                                upper,
                            };
                            Ok(SourceIter::Docs(VecDeque::from([
                                cx.snap()?.index_scan(handle, index, range, *reverse),
                            ])))
                        }
                        Some(values) => {
                            let Value::Array(mut values) = eval(values, row, cx)? else {
                                // IN with a non-array matches nothing.
                                return Ok(SourceIter::Values(Vec::new().into_iter()));
                            };
                            values.sort_by(value::compare);
                            values.dedup_by(|a, b| value::equals(a, b));
                            let mut scans = VecDeque::with_capacity(values.len());
                            for v in values {
                                let mut eq = eq_values.clone();
                                eq.push(v);
                                cx.stats.index_lookups += 1;
                                scans.push_back(cx.snap()?.index_scan(
                                    handle,
                                    index,
                                    IndexRange {
                                        eq,
                                        lower: None,
                                        upper: None,
                                    },
                                    *reverse,
                                ));
                            }
                            Ok(SourceIter::Docs(scans))
                        }
                    }
                }
            },
        }
    }
}

impl Node for ForNode {
    fn next(&mut self, cx: &mut Cx) -> Result<Option<Row>, QueryError> {
        loop {
            cx.tick()?;
            if let Some((row, iter)) = &mut self.current {
                let item = match iter {
                    SourceIter::Values(it) => it.next().map(Ok),
                    SourceIter::Docs(scans) => loop {
                        let Some(front) = scans.front_mut() else {
                            break None;
                        };
                        match front.next() {
                            Some(r) => break Some(read_doc(cx, r)),
                            None => {
                                scans.pop_front();
                            }
                        }
                    },
                };
                match item {
                    Some(v) => {
                        let mut out = row.clone();
                        out[self.slot] = v?;
                        return Ok(Some(out));
                    }
                    None => self.current = None,
                }
            }
            let Some(row) = self.input.next(cx)? else {
                return Ok(None);
            };
            let iter = self.open(&row, cx)?;
            self.current = Some((row, iter));
        }
    }
}

struct LetNode {
    input: Box<dyn Node>,
    slot: usize,
    expr: CExpr,
}

impl Node for LetNode {
    fn next(&mut self, cx: &mut Cx) -> Result<Option<Row>, QueryError> {
        let Some(mut row) = self.input.next(cx)? else {
            return Ok(None);
        };
        row[self.slot] = eval(&self.expr, &row, cx)?;
        Ok(Some(row))
    }
}

struct FilterNode {
    input: Box<dyn Node>,
    expr: CExpr,
}

impl Node for FilterNode {
    fn next(&mut self, cx: &mut Cx) -> Result<Option<Row>, QueryError> {
        loop {
            let Some(row) = self.input.next(cx)? else {
                return Ok(None);
            };
            if value::truthy(&eval(&self.expr, &row, cx)?) {
                return Ok(Some(row));
            }
            cx.tick()?;
        }
    }
}

struct SortNode {
    input: Box<dyn Node>,
    keys: Vec<compile::CSortKey>,
    sorted: Option<std::vec::IntoIter<(Row, usize)>>,
}

impl Node for SortNode {
    fn next(&mut self, cx: &mut Cx) -> Result<Option<Row>, QueryError> {
        if self.sorted.is_none() {
            let mut rows: Vec<(Vec<Value>, Row, usize)> = Vec::new();
            while let Some(row) = self.input.next(cx)? {
                let mut key = Vec::with_capacity(self.keys.len());
                for k in &self.keys {
                    key.push(eval(&k.expr, &row, cx)?);
                }
                let size = row_size(&row) + key.iter().map(approx_size).sum::<usize>();
                cx.mem.charge(size)?;
                rows.push((key, row, size));
            }
            let dirs: Vec<bool> = self.keys.iter().map(|k| k.ascending).collect();
            rows.sort_by(|a, b| {
                for (i, asc) in dirs.iter().enumerate() {
                    let o = value::compare(&a.0[i], &b.0[i]);
                    let o = if *asc { o } else { o.reverse() };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
            self.sorted = Some(
                rows.into_iter()
                    .map(|(_, r, s)| (r, s))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
        }
        match self.sorted.as_mut().and_then(|it| it.next()) {
            Some((row, size)) => {
                cx.mem.release(size);
                Ok(Some(row))
            }
            None => Ok(None),
        }
    }
}

struct LimitNode {
    input: Box<dyn Node>,
    offset: CExpr,
    count: CExpr,
    bounds: Option<(u64, u64)>,
    seen: u64,
    returned: u64,
}

fn limit_number(v: &Value, what: &str) -> Result<u64, QueryError> {
    match v.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 => Ok(n as u64),
        _ => Err(QueryError::runtime(format!(
            "LIMIT {what} must be a non-negative integer, got {v}"
        ))),
    }
}

impl Node for LimitNode {
    fn next(&mut self, cx: &mut Cx) -> Result<Option<Row>, QueryError> {
        loop {
            if let Some((_, count)) = self.bounds {
                if self.returned >= count {
                    // Stop pulling: an upstream scan need not continue.
                    return Ok(None);
                }
            }
            let Some(row) = self.input.next(cx)? else {
                return Ok(None);
            };
            if self.bounds.is_none() {
                let offset = limit_number(&eval(&self.offset, &row, cx)?, "offset")?;
                let count = limit_number(&eval(&self.count, &row, cx)?, "count")?;
                self.bounds = Some((offset, count));
                if count == 0 {
                    return Ok(None);
                }
            }
            let (offset, _) = self.bounds.unwrap_or((0, 0));
            self.seen += 1;
            if self.seen <= offset {
                continue;
            }
            self.returned += 1;
            return Ok(Some(row));
        }
    }
}

struct CollectNode {
    input: Box<dyn Node>,
    spec: CCollect,
    seed: Row,
    out: Option<std::vec::IntoIter<Row>>,
}

struct Group {
    values: Vec<Value>,
    count: u64,
    into: Vec<Value>,
    aggs: Vec<Vec<Value>>,
}

impl CollectNode {
    fn run(&mut self, cx: &mut Cx) -> Result<Vec<Row>, QueryError> {
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let n_aggs = self.spec.aggregates.len();
        while let Some(row) = self.input.next(cx)? {
            let mut values = Vec::with_capacity(self.spec.groups.len());
            for (_, e) in &self.spec.groups {
                values.push(eval(e, &row, cx)?);
            }
            let key = value::hash_key(&Value::Array(values.clone()));
            let group = match groups.get_mut(&key) {
                Some(g) => g,
                None => {
                    cx.mem
                        .charge(values.iter().map(approx_size).sum::<usize>() + key.len() + 64)?;
                    order.push(key.clone());
                    groups.entry(key).or_insert(Group {
                        values,
                        count: 0,
                        into: Vec::new(),
                        aggs: vec![Vec::new(); n_aggs],
                    })
                }
            };
            group.count += 1;
            for (i, (_, _, e)) in self.spec.aggregates.iter().enumerate() {
                let v = eval(e, &row, cx)?;
                cx.mem.charge(approx_size(&v))?;
                group.aggs[i].push(v);
            }
            if let Some(CollectInto {
                projection,
                visible,
                ..
            }) = &self.spec.into
            {
                let v = match projection {
                    Some(p) => eval(p, &row, cx)?,
                    None => {
                        let mut m = Map::new();
                        for (name, slot) in visible {
                            m.insert(name.clone(), row[*slot].clone());
                        }
                        Value::Object(m)
                    }
                };
                cx.mem.charge(approx_size(&v))?;
                group.into.push(v);
            }
        }
        // Without grouping criteria, a COLLECT yields one row even for no input
        // (`COLLECT WITH COUNT INTO n` gives n = 0).
        if self.spec.groups.is_empty() && groups.is_empty() {
            let key = String::new();
            order.push(key.clone());
            groups.insert(
                key,
                Group {
                    values: Vec::new(),
                    count: 0,
                    into: Vec::new(),
                    aggs: vec![Vec::new(); n_aggs],
                },
            );
        }
        let mut out = Vec::with_capacity(groups.len());
        for key in order {
            let Some(g) = groups.remove(&key) else {
                continue;
            };
            let mut row = self.seed.clone();
            for &slot in &self.spec.keep {
                row[slot] = self.seed[slot].clone();
            }
            for ((slot, _), v) in self.spec.groups.iter().zip(g.values.iter()) {
                row[*slot] = v.clone();
            }
            for ((slot, func, _), vals) in self.spec.aggregates.iter().zip(g.aggs) {
                row[*slot] = aggregate(func, vals)?;
            }
            if let Some(CollectInto { slot, .. }) = &self.spec.into {
                row[*slot] = Value::Array(g.into);
            }
            if let Some(slot) = self.spec.count_into {
                row[slot] = Value::from(g.count);
            }
            out.push((g.values, row));
        }
        // ArangoDB's default COLLECT sorts by the group values.
        let mut out = out;
        out.sort_by(|a, b| value::compare(&Value::Array(a.0.clone()), &Value::Array(b.0.clone())));
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }
}

fn aggregate(func: &str, values: Vec<Value>) -> Result<Value, QueryError> {
    match func {
        "PUSH" => Ok(Value::Array(values)),
        "LENGTH" | "COUNT" => Ok(Value::from(values.len() as u64)),
        "AVG" => functions::call("AVERAGE", vec![Value::Array(values)]),
        "COUNT_UNIQUE" => functions::call("COUNT_DISTINCT", vec![Value::Array(values)]),
        other => functions::call(other, vec![Value::Array(values)]),
    }
}

impl Node for CollectNode {
    fn next(&mut self, cx: &mut Cx) -> Result<Option<Row>, QueryError> {
        if self.out.is_none() {
            let rows = self.run(cx)?;
            self.out = Some(rows.into_iter());
        }
        Ok(self.out.as_mut().and_then(|it| it.next()))
    }
}

struct ModifyNode {
    input: Box<dyn Node>,
    spec: CModify,
    handle: Option<CollectionHandle>,
}

/// `_key` from a key string or a document carrying one.
fn key_of(v: &Value, op: &str) -> Result<String, QueryError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Object(m) => match m.get("_key") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(QueryError::runtime(format!(
                "{op} needs a document with a _key attribute, or a key string; got an object without _key"
            ))),
        },
        other => Err(QueryError::runtime(format!(
            "{op} needs a document with a _key attribute, or a key string; got a value of type {}",
            value::typename(other)
        ))),
    }
}

fn option_bool(options: &Option<Value>, name: &str, default: bool) -> bool {
    options
        .as_ref()
        .and_then(|o| o.get(name))
        .and_then(|v| v.as_bool())
        .unwrap_or(default)
}

impl Node for ModifyNode {
    fn next(&mut self, cx: &mut Cx) -> Result<Option<Row>, QueryError> {
        let Some(mut row) = self.input.next(cx)? else {
            return Ok(None);
        };
        let spec = &self.spec;
        let first = eval(&spec.first, &row, cx)?;
        let second = spec
            .second
            .as_ref()
            .map(|e| eval(e, &row, cx))
            .transpose()?;
        let options = spec
            .options
            .as_ref()
            .map(|e| eval(e, &row, cx))
            .transpose()?;
        let db = cx.db.to_string();
        let auto_create = cx.opts.auto_create_collections
            && matches!(spec.kind, ModifyKind::Insert | ModifyKind::Upsert { .. });
        let handle = match &self.handle {
            Some(h) => h.clone(),
            None => {
                let h = write_tx(cx)?
                    .collection(&db, &spec.collection, auto_create)
                    .map_err(storage_error)?;
                self.handle = Some(h.clone());
                h
            }
        };
        let (old, new) = match spec.kind {
            ModifyKind::Insert => {
                if !first.is_object() {
                    return Err(QueryError::runtime(format!(
                        "INSERT needs an object, got a value of type {}",
                        value::typename(&first)
                    )));
                }
                let new = write_tx(cx)?
                    .insert(&handle, first)
                    .map_err(storage_error)?;
                (Value::Null, new)
            }
            ModifyKind::Update | ModifyKind::Replace => {
                let op = if spec.kind == ModifyKind::Update {
                    "UPDATE"
                } else {
                    "REPLACE"
                };
                let key = key_of(&first, op)?;
                let doc = second.unwrap_or(first);
                if !doc.is_object() {
                    return Err(QueryError::runtime(format!(
                        "{op} needs an object to apply, got a value of type {}",
                        value::typename(&doc)
                    )));
                }
                let mode = if spec.kind == ModifyKind::Update {
                    UpdateMode::Merge
                } else {
                    UpdateMode::Replace
                };
                // ArangoDB's default for UPDATE: nulls are stored (keepNull: true).
                let keep_null = option_bool(&options, "keepNull", true);
                write_tx(cx)?
                    .update(&handle, &key, doc, mode, keep_null)
                    .map_err(storage_error)?
            }
            ModifyKind::Remove => {
                let key = key_of(&first, "REMOVE")?;
                let old = write_tx(cx)?.remove(&handle, &key).map_err(storage_error)?;
                (old, Value::Null)
            }
            ModifyKind::Upsert { replace } => {
                let Value::Object(search) = &first else {
                    return Err(QueryError::runtime("UPSERT needs an object to search for"));
                };
                match upsert_find(cx, &handle, search)? {
                    None => {
                        let doc = second.unwrap_or(Value::Null);
                        if !doc.is_object() {
                            return Err(QueryError::runtime("UPSERT's INSERT needs an object"));
                        }
                        let new = write_tx(cx)?.insert(&handle, doc).map_err(storage_error)?;
                        (Value::Null, new)
                    }
                    Some(old) => {
                        row[spec.old_slot] = old.clone();
                        let patch = match &spec.third {
                            Some(e) => eval(e, &row, cx)?,
                            None => Value::Null,
                        };
                        if !patch.is_object() {
                            return Err(QueryError::runtime(
                                "UPSERT's UPDATE/REPLACE needs an object",
                            ));
                        }
                        let key = key_of(&old, "UPSERT")?;
                        let mode = if replace {
                            UpdateMode::Replace
                        } else {
                            UpdateMode::Merge
                        };
                        let keep_null = option_bool(&options, "keepNull", true);
                        write_tx(cx)?
                            .update(&handle, &key, patch, mode, keep_null)
                            .map_err(storage_error)?
                    }
                }
            }
        };
        cx.stats.writes_executed += 1;
        row[spec.old_slot] = old;
        row[spec.new_slot] = new;
        Ok(Some(row))
    }
}

fn write_tx<'b>(cx: &'b mut Cx) -> Result<&'b mut WriteTx, QueryError> {
    cx.write
        .as_deref_mut()
        .ok_or_else(|| QueryError::runtime("data modification outside a write query"))
}

/// The first document whose attributes equal every attribute of `search`, as the
/// transaction sees it now.
fn upsert_find(
    cx: &mut Cx,
    handle: &CollectionHandle,
    search: &Map<String, Value>,
) -> Result<Option<Value>, QueryError> {
    if let Some(Value::String(key)) = search.get("_key") {
        let doc = write_tx(cx)?.get(handle, key).map_err(storage_error)?;
        return Ok(doc.filter(|d| matches_all(d, search)));
    }
    // Scan through the transaction, not the query's snapshot: an UPSERT sees the
    // query's own earlier writes (ArangoDB's readOwnWrites, on by default), so an
    // UPSERT in a loop updates what an earlier iteration inserted. The scanned range
    // joins the read set the commit checks for conflicts.
    let docs = write_tx(cx)?.scan(handle);
    for item in docs {
        let doc = read_doc(cx, item)?;
        if matches_all(&doc, search) {
            return Ok(Some(doc));
        }
    }
    Ok(None)
}

fn matches_all(doc: &Value, search: &Map<String, Value>) -> bool {
    search.iter().all(|(k, v)| {
        doc.get(k)
            .map(|d| value::equals(d, v))
            .unwrap_or(v.is_null())
    })
}

// ---- expressions ----------------------------------------------------------------

fn eval(e: &CExpr, row: &Row, cx: &mut Cx) -> Result<Value, QueryError> {
    Ok(match e {
        CExpr::Const(v) => v.clone(),
        CExpr::Slot(s) => row[*s].clone(),
        CExpr::Collection(handle) => {
            // Held while it is built; a per-row value once built, so its charge ends
            // with the evaluation.
            let before = cx.mem.used;
            let mut docs = Vec::new();
            for item in cx.snap()?.scan(handle) {
                let doc = read_doc(cx, item)?;
                cx.mem.charge(approx_size(&doc))?;
                docs.push(doc);
            }
            cx.mem.used = before;
            Value::Array(docs)
        }
        CExpr::Array(items) => {
            let mut v = Vec::with_capacity(items.len());
            for i in items {
                v.push(eval(i, row, cx)?);
            }
            Value::Array(v)
        }
        CExpr::Object(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let key = match k {
                    CKey::Static(s) => s.clone(),
                    CKey::Computed(ke) => value::to_string(&eval(ke, row, cx)?),
                };
                m.insert(key, eval(v, row, cx)?);
            }
            Value::Object(m)
        }
        CExpr::Attr(base, name) => match eval(base, row, cx)? {
            Value::Object(mut m) => m.remove(name).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        CExpr::Index(base, idx) => {
            let b = eval(base, row, cx)?;
            let i = eval(idx, row, cx)?;
            index_value(b, &i)
        }
        CExpr::Expand {
            base,
            slot,
            filter,
            limit,
            projection,
        } => {
            let Value::Array(items) = eval(base, row, cx)? else {
                return Ok(Value::Array(Vec::new()));
            };
            let max = match limit {
                Some(l) => limit_number(&eval(l, row, cx)?, "count")? as usize,
                None => usize::MAX,
            };
            let mut scratch = row.clone();
            let mut out = Vec::new();
            for item in items {
                if out.len() >= max {
                    break;
                }
                // Inline expansions can nest: the time limit must reach inside them.
                cx.tick()?;
                scratch[*slot] = item;
                if let Some(f) = filter {
                    if !value::truthy(&eval(f, &scratch, cx)?) {
                        continue;
                    }
                }
                out.push(match projection {
                    Some(p) => eval(p, &scratch, cx)?,
                    None => std::mem::take(&mut scratch[*slot]),
                });
            }
            Value::Array(out)
        }
        CExpr::Flatten(base, depth) => {
            let v = eval(base, row, cx)?;
            let mut out = Vec::new();
            flatten_into(v, *depth as usize, &mut out);
            Value::Array(out)
        }
        CExpr::Unary(op, a) => value::unary(*op, &eval(a, row, cx)?),
        CExpr::Binary(op, a, b) => {
            let a = eval(a, row, cx)?;
            let b = eval(b, row, cx)?;
            value::binary(*op, &a, &b)?
        }
        // AND/OR short-circuit and yield an operand, as in ArangoDB.
        CExpr::And(a, b) => {
            let a = eval(a, row, cx)?;
            if value::truthy(&a) {
                eval(b, row, cx)?
            } else {
                a
            }
        }
        CExpr::Or(a, b) => {
            let a = eval(a, row, cx)?;
            if value::truthy(&a) {
                a
            } else {
                eval(b, row, cx)?
            }
        }
        CExpr::Ternary(c, t, o) => {
            let cv = eval(c, row, cx)?;
            if value::truthy(&cv) {
                match t {
                    Some(t) => eval(t, row, cx)?,
                    None => cv,
                }
            } else {
                eval(o, row, cx)?
            }
        }
        CExpr::Range(a, b) => {
            let a = eval(a, row, cx)?;
            let b = eval(b, row, cx)?;
            let r = value::range(&a, &b, cx.opts.max_range_elements)?;
            cx.mem.check(approx_size(&r))?;
            r
        }
        CExpr::Call(name, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, row, cx)?);
            }
            functions::call(name, vals)?
        }
        CExpr::Context(name, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, row, cx)?);
            }
            context_function(cx, name, vals)?
        }
        CExpr::Subquery(plan) => {
            // Everything the subquery's nodes and result hold is released when it
            // returns: its state is dropped and its result is a per-row value.
            let before = cx.mem.used;
            let mut node = build(plan, row.clone());
            let mut out = Vec::new();
            while let Some(r) = node.next(cx)? {
                if let Some((ret, distinct)) = &plan.ret {
                    let v = eval(ret, &r, cx)?;
                    if *distinct && out.iter().any(|x| value::equals(x, &v)) {
                        continue;
                    }
                    cx.mem.charge(approx_size(&v))?;
                    out.push(v);
                }
            }
            cx.mem.used = before;
            Value::Array(out)
        }
    })
}

/// Evaluates an expression of [`compile::compile_expression`] on `row`, without
/// storage or query context (its compiler refused whatever would need them).
pub(crate) fn eval_standalone(
    e: &CExpr,
    row: &Row,
    opts: &QueryOptions,
) -> Result<Value, QueryError> {
    let mut stats = Stats::default();
    let mut mem = Mem::new(opts.memory_limit_bytes);
    let mut cx = Cx {
        snap: None,
        db: "",
        stats: &mut stats,
        mem: &mut mem,
        opts,
        deadline: opts.max_runtime.map(|d| Instant::now() + d),
        ticks: 0,
        write: None,
    };
    eval(e, row, &mut cx)
}

fn index_value(base: Value, idx: &Value) -> Value {
    match (base, idx) {
        (Value::Array(mut xs), Value::Number(n)) => {
            let Some(i) = n.as_f64() else {
                return Value::Null;
            };
            if i.fract() != 0.0 {
                return Value::Null;
            }
            let len = xs.len() as i64;
            let i = i as i64;
            let i = if i < 0 { len + i } else { i };
            if i < 0 || i >= len {
                Value::Null
            } else {
                xs.swap_remove(i as usize)
            }
        }
        (Value::Object(mut m), Value::String(k)) => m.remove(k).unwrap_or(Value::Null),
        (Value::Object(mut m), other) => m.remove(&value::to_string(other)).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn flatten_into(v: Value, depth: usize, out: &mut Vec<Value>) {
    match v {
        Value::Array(xs) => {
            for x in xs {
                match x {
                    Value::Array(_) if depth > 0 => flatten_into(x, depth - 1, out),
                    other => out.push(other),
                }
            }
        }
        other => out.push(other),
    }
}

/// The functions that need the query's storage or context.
fn context_function(cx: &mut Cx, name: &str, args: Vec<Value>) -> Result<Value, QueryError> {
    match name {
        "DOCUMENT" => document(cx, args),
        "CURRENT_DATABASE" => Ok(Value::String(cx.db.to_string())),
        "CURRENT_USER" => Ok(cx
            .opts
            .user
            .clone()
            .map(Value::String)
            .unwrap_or(Value::Null)),
        "COLLECTIONS" => {
            let colls = cx.snap()?.collections(cx.db).map_err(storage_error)?;
            Ok(Value::Array(
                colls
                    .into_iter()
                    .map(|c| serde_json::json!({ "_id": c.id.to_string(), "name": c.name }))
                    .collect(),
            ))
        }
        "COLLECTION_COUNT" => {
            let coll = match args.first() {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(QueryError::runtime(
                        "COLLECTION_COUNT() needs a collection name (a string)",
                    ))
                }
            };
            let handle = cx.snap()?.collection(cx.db, &coll).map_err(storage_error)?;
            let mut n = 0u64;
            for item in cx.snap()?.scan(&handle) {
                item.map_err(storage_error)?;
                n += 1;
                cx.tick()?;
            }
            Ok(Value::from(n))
        }
        other => Err(QueryError::runtime(format!(
            "{other}() is not available here"
        ))),
    }
}

/// `DOCUMENT("coll/key")`, `DOCUMENT(["c/k", …])`, `DOCUMENT("coll", "key")`,
/// `DOCUMENT("coll", ["k", …])`: missing documents are null (single) or skipped
/// (lists), as in ArangoDB.
fn document(cx: &mut Cx, args: Vec<Value>) -> Result<Value, QueryError> {
    let fetch = |cx: &mut Cx, coll: &str, key: &str| -> Result<Value, QueryError> {
        if themis_storage::validate_key(key).is_err() {
            return Ok(Value::Null);
        }
        let Ok(handle) = cx.snap()?.collection(cx.db, coll) else {
            return Ok(Value::Null);
        };
        cx.stats.index_lookups += 1;
        match cx.snap()?.get(&handle, key).map_err(storage_error)? {
            Some(b) => read_doc(cx, Ok(b)),
            None => Ok(Value::Null),
        }
    };
    let by_id = |cx: &mut Cx, id: &Value| -> Result<Value, QueryError> {
        match id.as_str().and_then(|s| s.split_once('/')) {
            Some((c, k)) => fetch(cx, c, k),
            None => Ok(Value::Null),
        }
    };
    match args.as_slice() {
        [Value::Array(ids)] => {
            let mut out = Vec::new();
            for id in ids {
                let d = by_id(cx, id)?;
                if !d.is_null() {
                    out.push(d);
                }
            }
            Ok(Value::Array(out))
        }
        [id] => by_id(cx, id),
        [coll, Value::Array(keys)] => {
            let coll = value::to_string(coll);
            let mut out = Vec::new();
            for k in keys {
                let d = match k.as_str() {
                    Some(k) if k.contains('/') => by_id(cx, &Value::String(k.to_string()))?,
                    Some(k) => fetch(cx, &coll, k)?,
                    None => Value::Null,
                };
                if !d.is_null() {
                    out.push(d);
                }
            }
            Ok(Value::Array(out))
        }
        [coll, key] => {
            let coll = value::to_string(coll);
            match key.as_str() {
                Some(k) if k.contains('/') => by_id(cx, key),
                Some(k) => fetch(cx, &coll, k),
                None => Ok(Value::Null),
            }
        }
        _ => Err(QueryError::runtime("DOCUMENT() takes 1 or 2 arguments")),
    }
}
