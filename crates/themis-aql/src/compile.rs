//! AST → executable plan: variables resolved to row slots, bind parameters substituted,
//! collections resolved, and for each `FOR` over a collection the access path chosen
//! (full scan, primary key, or a secondary index for equality / range / `IN` filters or
//! for `SORT … LIMIT`).
//!
//! The planner never drops a `FILTER`: an index only narrows what is read, and every
//! filter is still evaluated on every row, so a wrong index choice can cost time but
//! never change a result. The one node it removes is a `SORT` whose order the chosen
//! index already delivers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use themis_storage::{CollectionHandle, IndexInfo, QuerySnapshot};

use crate::ast::{self, BinaryOp, CollectionRef, Expr, ExprKind, ObjectKey, OpKind, Query};
use crate::error::{ErrorKind, QueryError, Span};
use crate::functions;

/// A compiled expression; variables are row slots.
#[derive(Debug, Clone)]
pub(crate) enum CExpr {
    Const(Value),
    Slot(usize),
    /// A collection used as a value: the array of all its documents.
    Collection(CollectionHandle),
    Array(Vec<CExpr>),
    Object(Vec<(CKey, CExpr)>),
    Attr(Box<CExpr>, String),
    Index(Box<CExpr>, Box<CExpr>),
    Expand {
        base: Box<CExpr>,
        slot: usize,
        filter: Option<Box<CExpr>>,
        limit: Option<Box<CExpr>>,
        projection: Option<Box<CExpr>>,
    },
    Flatten(Box<CExpr>, u32),
    Unary(ast::UnaryOp, Box<CExpr>),
    Binary(BinaryOp, Box<CExpr>, Box<CExpr>),
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    Ternary(Box<CExpr>, Option<Box<CExpr>>, Box<CExpr>),
    Range(Box<CExpr>, Box<CExpr>),
    Call(String, Vec<CExpr>),
    /// A function that needs the query's storage or context (`DOCUMENT`,
    /// `COLLECTIONS`, `COLLECTION_COUNT`, `CURRENT_DATABASE`, `CURRENT_USER`): the
    /// executor evaluates it.
    Context(String, Vec<CExpr>),
    Subquery(Arc<Plan>),
}

#[derive(Debug, Clone)]
pub(crate) enum CKey {
    Static(String),
    Computed(CExpr),
}

/// How a `FOR` reads its collection.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    Scan,
    /// `_key == expr` or `_key IN expr`.
    Primary(CExpr),
    /// A secondary index.
    Index(Box<IndexAccess>),
}

/// Equality on a prefix of the index's fields, then an optional range on the next
/// one; `in_values` (for `IN`) stands for one more equality per value.
#[derive(Debug, Clone)]
pub(crate) struct IndexAccess {
    pub index: IndexInfo,
    pub eq: Vec<CExpr>,
    pub in_values: Option<CExpr>,
    pub lower: Option<(CExpr, bool)>,
    pub upper: Option<(CExpr, bool)>,
    pub reverse: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Collection {
        handle: CollectionHandle,
        access: Access,
    },
    Expr(CExpr),
}

#[derive(Debug, Clone)]
pub(crate) struct CSortKey {
    pub expr: CExpr,
    pub ascending: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct CCollect {
    pub groups: Vec<(usize, CExpr)>,
    pub aggregates: Vec<(usize, String, CExpr)>,
    /// INTO slot, and either a projection or the visible variables (name, slot).
    pub into: Option<CollectInto>,
    pub count_into: Option<usize>,
    /// Slots that survive the COLLECT (the enclosing query's variables).
    pub keep: Vec<usize>,
}

/// `INTO var [= projection]`: without a projection each group member is an object of
/// the `visible` variables (name, slot).
#[derive(Debug, Clone)]
pub(crate) struct CollectInto {
    pub slot: usize,
    pub projection: Option<CExpr>,
    pub visible: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModifyKind {
    Insert,
    Update,
    Replace,
    Remove,
    Upsert { replace: bool },
}

impl ModifyKind {
    /// The operation as written, for EXPLAIN.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ModifyKind::Insert => "INSERT",
            ModifyKind::Update => "UPDATE",
            ModifyKind::Replace => "REPLACE",
            ModifyKind::Remove => "REMOVE",
            ModifyKind::Upsert { replace: false } => "UPSERT (INSERT or UPDATE)",
            ModifyKind::Upsert { replace: true } => "UPSERT (INSERT or REPLACE)",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CModify {
    pub kind: ModifyKind,
    pub collection: String,
    /// The document (INSERT), the key or document (UPDATE/REPLACE/REMOVE), or the
    /// search object (UPSERT).
    pub first: CExpr,
    /// WITH doc (UPDATE/REPLACE), INSERT doc (UPSERT).
    pub second: Option<CExpr>,
    /// UPDATE/REPLACE doc of UPSERT.
    pub third: Option<CExpr>,
    pub options: Option<CExpr>,
    pub old_slot: usize,
    pub new_slot: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    For { slot: usize, source: Source },
    Let { slot: usize, expr: CExpr },
    Filter(CExpr),
    Sort(Vec<CSortKey>),
    Limit { offset: CExpr, count: CExpr },
    Collect(Box<CCollect>),
    Modify(Box<CModify>),
}

/// A compiled (sub)query: steps run in order over rows of `slots` values, and the
/// `RETURN` expression (absent for a write without RETURN) turns each final row into
/// a result.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub ret: Option<(CExpr, bool)>,
    pub slots: usize,
    /// Human-readable plan lines for EXPLAIN.
    pub explain: Vec<String>,
}

/// Compiles `query` for database `db` against `snap`.
pub(crate) fn compile(
    query: &Query,
    bind_vars: &BTreeMap<String, Value>,
    db: &str,
    snap: &QuerySnapshot,
) -> Result<Plan, QueryError> {
    let mut c = Compiler {
        bind_vars,
        used_binds: HashSet::new(),
        db,
        snap: Some(snap),
        standalone: "",
        next_slot: 0,
        depth: 0,
        sub_explain: Vec::new(),
    };
    let mut scope = Scope::default();
    let plan = c.query(query, &mut scope, 0)?;
    let mut plan = plan;
    plan.slots = c.next_slot;
    for name in bind_vars.keys() {
        if !c.used_binds.contains(name) {
            return Err(QueryError::new(
                ErrorKind::Semantic,
                format!("bind parameter '{name}' was given but is not used in the query: remove it from bind_vars or use @{name} in the query"),
            ));
        }
    }
    Ok(plan)
}

/// Compiles a standalone expression, such as a subscription filter: `vars` are its
/// variables, in slots `0..vars.len()`; returns the expression and how many slots a
/// row for it needs. Such an expression reads nothing but its variables: collections,
/// bind parameters, subqueries and the executor's functions (`DOCUMENT()`, …) are
/// refused here, naming `context` ("a subscription filter"), so evaluating it never
/// needs storage.
pub(crate) fn compile_expression(
    expr: &Expr,
    vars: &[&str],
    context: &str,
) -> Result<(CExpr, usize), QueryError> {
    let no_binds = BTreeMap::new();
    let mut c = Compiler {
        bind_vars: &no_binds,
        used_binds: HashSet::new(),
        db: "",
        snap: None,
        standalone: context,
        next_slot: 0,
        depth: 0,
        sub_explain: Vec::new(),
    };
    let mut scope = Scope::default();
    for name in vars {
        let slot = c.slot();
        scope.vars.push((name.to_string(), slot));
    }
    let e = c.expr(expr, &mut scope)?;
    Ok((e, c.next_slot))
}

#[derive(Debug, Default, Clone)]
struct Scope {
    vars: Vec<(String, usize)>,
}

impl Scope {
    fn lookup(&self, name: &str) -> Option<usize> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }
}

struct Compiler<'a> {
    bind_vars: &'a BTreeMap<String, Value>,
    used_binds: HashSet<String>,
    db: &'a str,
    /// `None` for a standalone expression ([`compile_expression`]).
    snap: Option<&'a QuerySnapshot>,
    /// What a standalone expression is, for its error messages.
    standalone: &'a str,
    next_slot: usize,
    /// How deeply the (sub)query being compiled is nested, for EXPLAIN's indent.
    depth: usize,
    /// EXPLAIN lines of subqueries compiled for the current operation: they follow
    /// that operation's own line.
    sub_explain: Vec<String>,
}

/// A filter conjunct an index can serve: `var.field OP value`.
struct Condition {
    field: String,
    op: BinaryOp,
    value: CExpr,
    text: String,
}

impl<'a> Compiler<'a> {
    fn slot(&mut self) -> usize {
        self.next_slot += 1;
        self.next_slot - 1
    }

    fn declare(&mut self, scope: &mut Scope, name: &ast::Name) -> Result<usize, QueryError> {
        if scope.vars.iter().any(|(n, _)| n == &name.name) {
            return Err(QueryError::semantic(
                format!(
                    "variable '{}' is assigned again: AQL variables are immutable, choose another name",
                    name.name
                ),
                name.span,
            ));
        }
        let slot = self.slot();
        scope.vars.push((name.name.clone(), slot));
        Ok(slot)
    }

    fn collection_name(&mut self, r: &CollectionRef) -> Result<(String, Span), QueryError> {
        match r {
            CollectionRef::Name(n) => Ok((n.name.clone(), n.span)),
            CollectionRef::Bind(n) => Ok((self.bind_collection(&n.name, n.span)?, n.span)),
        }
    }

    /// The collection name a `@@name` parameter gives: in bind_vars as `"@name"`
    /// (ArangoDB's convention), or as `"name"`; it must be a string.
    fn bind_collection(&mut self, name: &str, span: Span) -> Result<String, QueryError> {
        if self.snap.is_none() {
            return self.bind(&format!("@{name}"), span).map(|_| String::new());
        }
        let at = format!("@{name}");
        let value = if self.bind_vars.contains_key(&at) {
            self.bind(&at, span)?
        } else if self.bind_vars.contains_key(name) {
            self.bind(name, span)?
        } else {
            return Err(QueryError::semantic(
                format!("collection bind parameter '@{name}' is missing: add \"@{name}\": \"<collection>\" to bind_vars"),
                span,
            ));
        };
        match value {
            Value::String(coll) => Ok(coll),
            other => Err(QueryError::semantic(
                format!(
                    "bind parameter @@{name} must be a collection name (a string), got {}",
                    crate::value::typename(&other)
                ),
                span,
            )),
        }
    }

    /// The collection `name` of the query's database. An unknown name is an error in
    /// the query (ERR_QUERY), like an unknown function or bind parameter.
    fn resolve_collection(&self, name: &str, span: Span) -> Result<CollectionHandle, QueryError> {
        let Some(snap) = self.snap else {
            return Err(QueryError::semantic(
                format!(
                    "unknown variable '{name}': {} can use only `doc` (the changed document) and cannot read collections",
                    self.standalone
                ),
                span,
            ));
        };
        snap.collection(self.db, name).map_err(|_| {
            QueryError::semantic(
                format!(
                    "collection or variable '{name}' not found in database '{}': create the collection, or declare the variable before using it",
                    self.db
                ),
                span,
            )
        })
    }

    fn bind(&mut self, name: &str, span: Span) -> Result<Value, QueryError> {
        if self.snap.is_none() {
            return Err(QueryError::semantic(
                format!(
                    "bind parameter '@{name}' cannot be used in {}: write the value into it",
                    self.standalone
                ),
                span,
            ));
        }
        self.used_binds.insert(name.to_string());
        self.bind_vars.get(name).cloned().ok_or_else(|| {
            QueryError::semantic(
                format!("bind parameter '{name}' is missing: add it to bind_vars"),
                span,
            )
        })
    }

    fn query(&mut self, q: &Query, scope: &mut Scope, depth: usize) -> Result<Plan, QueryError> {
        let mut steps = Vec::new();
        let mut explain = Vec::new();
        let mut ret = None;
        let indent = "  ".repeat(depth);
        // Variables of enclosing queries; COLLECT hides only this level's.
        let base = scope.vars.len();
        // Set when the index chosen for a FOR delivers the order of the next SORT.
        let mut sort_served = false;
        for (i, op) in q.ops.iter().enumerate() {
            match &op.kind {
                OpKind::For { var, source } => {
                    let (source_c, desc, serves_sort) =
                        self.for_source(source, var, &q.ops[i + 1..], scope)?;
                    let slot = self.declare(scope, var)?;
                    explain.push(format!("{indent}{desc}"));
                    steps.push(Step::For {
                        slot,
                        source: source_c,
                    });
                    sort_served = serves_sort;
                }
                OpKind::Sort(_) if sort_served => {
                    sort_served = false;
                    explain.push(format!(
                        "{indent}Sort (served by the index order: no sort step)"
                    ));
                }
                OpKind::Return { distinct, expr } => {
                    let e = self.expr(expr, scope)?;
                    explain.push(format!(
                        "{indent}Return{} {}",
                        if *distinct { " DISTINCT" } else { "" },
                        snippet(expr)
                    ));
                    ret = Some((e, *distinct));
                    if i + 1 != q.ops.len() {
                        return Err(QueryError::semantic(
                            "RETURN must be the last operation of a query or subquery",
                            q.ops[i + 1].span,
                        ));
                    }
                }
                OpKind::Insert { .. }
                | OpKind::Update { .. }
                | OpKind::Replace { .. }
                | OpKind::Remove { .. }
                | OpKind::Upsert { .. } => {
                    let m = self.modify(op, scope)?;
                    explain.push(format!("{indent}{} into {}", m.kind.name(), m.collection));
                    steps.push(Step::Modify(Box::new(m)));
                }
                _ => self.simple_op(op, scope, base, &mut steps, &mut explain, &indent)?,
            }
            explain.append(&mut self.sub_explain);
        }
        scope.vars.truncate(base.min(scope.vars.len()));
        Ok(Plan {
            steps,
            ret,
            slots: 0,
            explain,
        })
    }

    fn simple_op(
        &mut self,
        op: &ast::Op,
        scope: &mut Scope,
        base: usize,
        steps: &mut Vec<Step>,
        explain: &mut Vec<String>,
        indent: &str,
    ) -> Result<(), QueryError> {
        match &op.kind {
            OpKind::Let { var, expr } => {
                let e = self.expr(expr, scope)?;
                let slot = self.declare(scope, var)?;
                explain.push(format!("{indent}Let {} = {}", var.name, snippet(expr)));
                steps.push(Step::Let { slot, expr: e });
            }
            OpKind::Filter(expr) => {
                let e = self.expr(expr, scope)?;
                explain.push(format!("{indent}Filter {}", snippet(expr)));
                steps.push(Step::Filter(e));
            }
            OpKind::Sort(keys) => {
                let mut ck = Vec::new();
                for k in keys {
                    ck.push(CSortKey {
                        expr: self.expr(&k.expr, scope)?,
                        ascending: k.ascending,
                    });
                }
                explain.push(format!(
                    "{indent}Sort {}",
                    keys.iter()
                        .map(|k| format!(
                            "{} {}",
                            snippet(&k.expr),
                            if k.ascending { "ASC" } else { "DESC" }
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                steps.push(Step::Sort(ck));
            }
            OpKind::Limit { offset, count } => {
                let offset_c = match offset {
                    Some(o) => self.expr(o, scope)?,
                    None => CExpr::Const(Value::from(0)),
                };
                let count_c = self.expr(count, scope)?;
                explain.push(format!(
                    "{indent}Limit {}{}",
                    offset
                        .as_ref()
                        .map(|o| format!("{}, ", snippet(o)))
                        .unwrap_or_default(),
                    snippet(count)
                ));
                steps.push(Step::Limit {
                    offset: offset_c,
                    count: count_c,
                });
            }
            OpKind::Collect(c) => {
                let cc = self.collect(c, scope, base)?;
                explain.push(format!("{indent}Collect (sorted by group)"));
                steps.push(Step::Collect(Box::new(cc)));
            }
            _ => {
                return Err(QueryError::semantic("unexpected operation here", op.span));
            }
        }
        Ok(())
    }

    fn collect(
        &mut self,
        c: &ast::Collect,
        scope: &mut Scope,
        base: usize,
    ) -> Result<CCollect, QueryError> {
        // Expressions are evaluated in the scope before the COLLECT.
        let mut groups = Vec::new();
        let mut group_exprs = Vec::new();
        for (_, e) in &c.groups {
            group_exprs.push(self.expr(e, scope)?);
        }
        let mut aggs = Vec::new();
        for (name, e) in &c.aggregates {
            let ExprKind::Call { name: func, args } = &e.kind else {
                return Err(QueryError::semantic(
                    format!(
                        "AGGREGATE {} needs an aggregate function call such as SUM(x)",
                        name.name
                    ),
                    e.span,
                ));
            };
            if args.len() != 1 {
                return Err(QueryError::semantic(
                    format!("aggregate function {func}() in AGGREGATE takes exactly 1 argument"),
                    e.span,
                ));
            }
            if !AGGREGATES.contains(&func.as_str()) {
                return Err(QueryError::semantic(
                    format!(
                        "{func}() cannot be used in AGGREGATE: use one of {}",
                        AGGREGATES.join(", ")
                    ),
                    e.span,
                ));
            }
            aggs.push((func.clone(), self.expr(&args[0], scope)?));
        }
        let into_proj = match &c.into {
            Some((_, Some(p))) => Some(self.expr(p, scope)?),
            _ => None,
        };
        // The variables an INTO without projection captures: those of this query level.
        let visible: Vec<(String, usize)> = scope.vars[base.min(scope.vars.len())..].to_vec();
        // COLLECT hides the variables of this query level; those of enclosing queries
        // stay visible, and their values are carried into the output rows.
        let keep: Vec<usize> = scope.vars[..base.min(scope.vars.len())]
            .iter()
            .map(|(_, s)| *s)
            .collect();
        scope.vars.truncate(base.min(scope.vars.len()));
        for ((name, _), e) in c.groups.iter().zip(group_exprs) {
            let slot = self.declare(scope, name)?;
            groups.push((slot, e));
        }
        let mut aggregates = Vec::new();
        for ((name, _), (func, e)) in c.aggregates.iter().zip(aggs) {
            let slot = self.declare(scope, name)?;
            aggregates.push((slot, func, e));
        }
        let into = match &c.into {
            Some((name, _)) => {
                let slot = self.declare(scope, name)?;
                Some(CollectInto {
                    slot,
                    projection: into_proj,
                    visible,
                })
            }
            None => None,
        };
        let count_into = match &c.count_into {
            Some(name) => Some(self.declare(scope, name)?),
            None => None,
        };
        Ok(CCollect {
            groups,
            aggregates,
            into,
            count_into,
            keep,
        })
    }

    fn modify(&mut self, op: &ast::Op, scope: &mut Scope) -> Result<CModify, QueryError> {
        let (kind, first, second, third, collection, options) = match &op.kind {
            OpKind::Insert {
                doc,
                collection,
                options,
            } => (ModifyKind::Insert, doc, None, None, collection, options),
            OpKind::Update {
                key,
                with,
                collection,
                options,
            } => (
                ModifyKind::Update,
                key,
                with.as_ref(),
                None,
                collection,
                options,
            ),
            OpKind::Replace {
                key,
                with,
                collection,
                options,
            } => (
                ModifyKind::Replace,
                key,
                with.as_ref(),
                None,
                collection,
                options,
            ),
            OpKind::Remove {
                key,
                collection,
                options,
            } => (ModifyKind::Remove, key, None, None, collection, options),
            OpKind::Upsert {
                search,
                insert,
                update,
                replace,
                collection,
                options,
            } => (
                ModifyKind::Upsert { replace: *replace },
                search,
                Some(insert),
                Some(update),
                collection,
                options,
            ),
            _ => unreachable!("modify called for a modification op"),
        };
        let (coll, _) = self.collection_name(collection)?;
        let first = self.expr(first, scope)?;
        let second = second.map(|e| self.expr(e, scope)).transpose()?;
        // UPSERT's update expression sees OLD.
        let old_name = ast::Name {
            name: "OLD".into(),
            span: op.span,
        };
        let new_name = ast::Name {
            name: "NEW".into(),
            span: op.span,
        };
        scope.vars.retain(|(n, _)| n != "OLD" && n != "NEW");
        let old_slot = self.declare(scope, &old_name)?;
        let third = third.map(|e| self.expr(e, scope)).transpose()?;
        let options_span = options.as_ref().map(|e| e.span).unwrap_or(op.span);
        let options = options.as_ref().map(|e| self.expr(e, scope)).transpose()?;
        check_modify_options(options.as_ref(), options_span)?;
        let new_slot = self.declare(scope, &new_name)?;
        Ok(CModify {
            kind,
            collection: coll,
            first,
            second,
            third,
            options,
            old_slot,
            new_slot,
        })
    }

    /// The source of a FOR, and for a collection the access path chosen from the
    /// FILTERs (and SORT) that follow it. Returns whether a following SORT is served.
    fn for_source(
        &mut self,
        source: &Expr,
        var: &ast::Name,
        rest: &[ast::Op],
        scope: &mut Scope,
    ) -> Result<(Source, String, bool), QueryError> {
        let collection = match &source.kind {
            ExprKind::Ident(name) if scope.lookup(name).is_none() => {
                Some((name.clone(), source.span))
            }
            ExprKind::BindCollection(name) => {
                Some((self.bind_collection(name, source.span)?, source.span))
            }
            _ => None,
        };
        let Some((name, span)) = collection else {
            let e = self.expr(source, scope)?;
            return Ok((
                Source::Expr(e),
                format!("For {} IN {} (array)", var.name, snippet(source)),
                false,
            ));
        };
        let handle = self.resolve_collection(&name, span)?;
        let Some(snap) = self.snap else {
            return Err(QueryError::semantic(
                "collections cannot be read here",
                span,
            ));
        };
        let indexes = snap
            .indexes(&handle)
            .map_err(|e| QueryError::runtime(e.to_string()))?;

        // Conditions from the FILTERs directly after the FOR (LETs may sit between).
        let mut conds = Vec::new();
        let mut sort: Option<&Vec<ast::SortKey>> = None;
        for op in rest {
            match &op.kind {
                OpKind::Filter(e) => self.conditions(e, &var.name, scope, &mut conds)?,
                OpKind::Let { .. } => {}
                OpKind::Sort(keys) => {
                    sort = Some(keys);
                    break;
                }
                _ => break,
            }
        }
        // A LIMIT must follow the SORT for the sorted-limit use of an index.
        let sort_then_limit = sort.is_some() && {
            let pos = rest.iter().position(|o| matches!(o.kind, OpKind::Sort(_)));
            pos.and_then(|p| rest.get(p + 1))
                .map(|o| matches!(o.kind, OpKind::Limit { .. }))
                .unwrap_or(false)
        };

        // 1. Primary key.
        if let Some(c) = conds
            .iter()
            .find(|c| c.field == "_key" && matches!(c.op, BinaryOp::Eq | BinaryOp::In))
        {
            let desc = format!(
                "For {} IN {} using the primary index ({})",
                var.name, name, c.text
            );
            let key_expr = c.value.clone();
            let key_expr = if c.op == BinaryOp::Eq {
                CExpr::Array(vec![key_expr])
            } else {
                key_expr
            };
            return Ok((
                Source::Collection {
                    handle,
                    access: Access::Primary(key_expr),
                },
                desc,
                false,
            ));
        }

        // 2. A secondary index for the filter conditions: most equality fields, then a
        //    range or IN on the next field.
        let mut best: Option<(usize, Access, String)> = None;
        for idx in &indexes {
            let mut eq = Vec::new();
            let mut texts = Vec::new();
            let mut in_values = None;
            let mut lower = None;
            let mut upper = None;
            for field in &idx.fields {
                if let Some(c) = conds
                    .iter()
                    .find(|c| &c.field == field && c.op == BinaryOp::Eq)
                {
                    eq.push(c.value.clone());
                    texts.push(c.text.clone());
                    continue;
                }
                if let Some(c) = conds
                    .iter()
                    .find(|c| &c.field == field && c.op == BinaryOp::In)
                {
                    in_values = Some(c.value.clone());
                    texts.push(c.text.clone());
                    break;
                }
                for c in conds.iter().filter(|c| &c.field == field) {
                    match c.op {
                        BinaryOp::Gt | BinaryOp::Ge if lower.is_none() => {
                            lower = Some((c.value.clone(), c.op == BinaryOp::Ge));
                            texts.push(c.text.clone());
                        }
                        BinaryOp::Lt | BinaryOp::Le if upper.is_none() => {
                            upper = Some((c.value.clone(), c.op == BinaryOp::Le));
                            texts.push(c.text.clone());
                        }
                        _ => {}
                    }
                }
                break;
            }
            let used = eq.len();
            let usable = used > 0 || in_values.is_some() || lower.is_some() || upper.is_some();
            if !usable {
                continue;
            }
            // A sparse index lacks the documents whose indexed fields are null or
            // missing: it may serve only conditions that exclude null for certain,
            // i.e. constants that are not null (AQL orders null below everything, so
            // `x < 5` matches null and needs a lower bound too).
            if idx.sparse {
                // A sparse index lacks every document with any indexed field null
                // or missing, so it may serve only conditions that exclude null on
                // every one of its fields: non-null constants (AQL orders null below
                // everything, so a range needs a non-null lower bound).
                let non_null = |e: &CExpr| matches!(e, CExpr::Const(v) if !v.is_null());
                let non_null_array = |e: &CExpr| match e {
                    CExpr::Const(Value::Array(vs)) => vs.iter().all(|v| !v.is_null()),
                    CExpr::Array(items) => items.iter().all(non_null),
                    _ => false,
                };
                let last_excludes_null = match (&in_values, &lower, &upper) {
                    (Some(values), _, _) => non_null_array(values),
                    (None, Some((low, _)), _) => non_null(low),
                    (None, None, Some(_)) => false,
                    (None, None, None) => true,
                };
                let covered =
                    used + usize::from(in_values.is_some() || lower.is_some() || upper.is_some());
                if !(eq.iter().all(non_null) && last_excludes_null && covered == idx.fields.len()) {
                    continue;
                }
            }
            let score = used * 4
                + if in_values.is_some() { 3 } else { 0 }
                + if lower.is_some() { 1 } else { 0 }
                + if upper.is_some() { 1 } else { 0 }
                + if idx.unique && used == idx.fields.len() {
                    8
                } else {
                    0
                };
            if best.as_ref().map(|(s, _, _)| score > *s).unwrap_or(true) {
                let desc = format!(
                    "For {} IN {} using index '{}' on [{}] ({})",
                    var.name,
                    name,
                    idx.name,
                    idx.fields.join(", "),
                    texts.join(" AND ")
                );
                best = Some((
                    score,
                    Access::Index(Box::new(IndexAccess {
                        index: idx.clone(),
                        eq,
                        in_values,
                        lower,
                        upper,
                        reverse: false,
                    })),
                    desc,
                ));
            }
        }
        if let Some((_, access, desc)) = best {
            return Ok((Source::Collection { handle, access }, desc, false));
        }

        // 3. SORT var.f1 [, var.f2] LIMIT: a non-sparse index on those fields in that
        //    order delivers the order, so the SORT goes and the LIMIT stops early.
        if let (Some(keys), true, true) = (sort, sort_then_limit, conds.is_empty()) {
            let fields: Option<Vec<String>> = keys
                .iter()
                .map(|k| attribute_path(&k.expr, &var.name))
                .collect();
            let same_dir = keys.windows(2).all(|w| w[0].ascending == w[1].ascending);
            if let (Some(fields), true) = (fields, same_dir) {
                if let Some(idx) = indexes.iter().find(|i| {
                    !i.sparse
                        && i.fields.len() >= fields.len()
                        && i.fields[..fields.len()] == fields[..]
                }) {
                    let reverse = !keys[0].ascending;
                    let desc = format!(
                        "For {} IN {} using index '{}' on [{}] in {} order (serves SORT {})",
                        var.name,
                        name,
                        idx.name,
                        idx.fields.join(", "),
                        if reverse { "descending" } else { "ascending" },
                        fields.join(", ")
                    );
                    return Ok((
                        Source::Collection {
                            handle,
                            access: Access::Index(Box::new(IndexAccess {
                                index: idx.clone(),
                                eq: Vec::new(),
                                in_values: None,
                                lower: None,
                                upper: None,
                                reverse,
                            })),
                        },
                        desc,
                        true,
                    ));
                }
            }
        }
        Ok((
            Source::Collection {
                handle,
                access: Access::Scan,
            },
            format!("For {} IN {} (full collection scan)", var.name, name),
            false,
        ))
    }

    /// Collects `var.field OP value` conjuncts of `e` usable for an index, where value
    /// does not depend on `var`.
    fn conditions(
        &mut self,
        e: &Expr,
        var: &str,
        scope: &mut Scope,
        out: &mut Vec<Condition>,
    ) -> Result<(), QueryError> {
        match &e.kind {
            ExprKind::Binary(BinaryOp::And, a, b) => {
                self.conditions(a, var, scope, out)?;
                self.conditions(b, var, scope, out)
            }
            ExprKind::Binary(op, a, b)
                if matches!(
                    op,
                    BinaryOp::Eq
                        | BinaryOp::Lt
                        | BinaryOp::Le
                        | BinaryOp::Gt
                        | BinaryOp::Ge
                        | BinaryOp::In
                ) =>
            {
                let (field, value, op) = match (attribute_path(a, var), attribute_path(b, var)) {
                    (Some(f), None) if !mentions(b, var) => (f, b, *op),
                    (None, Some(f)) if !mentions(a, var) && *op != BinaryOp::In => {
                        (f, a, flip(*op))
                    }
                    _ => return Ok(()),
                };
                // The value must be computable before the loop runs: a variable
                // declared after the FOR (a LET between FOR and FILTER) cannot drive
                // the index, so such a condition is left to the FILTER alone.
                // A subquery here is compiled again for the FILTER itself, whose
                // EXPLAIN line shows it.
                let saved = std::mem::take(&mut self.sub_explain);
                let value_c = self.expr(value, &mut scope.clone());
                self.sub_explain = saved;
                let Ok(value_c) = value_c else {
                    return Ok(());
                };
                out.push(Condition {
                    field,
                    op,
                    value: value_c,
                    text: snippet(e),
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn expr(&mut self, e: &Expr, scope: &mut Scope) -> Result<CExpr, QueryError> {
        Ok(match &e.kind {
            ExprKind::Null => CExpr::Const(Value::Null),
            ExprKind::Bool(b) => CExpr::Const(Value::Bool(*b)),
            ExprKind::Number(n) => CExpr::Const(crate::value::number(*n)),
            ExprKind::String(s) => CExpr::Const(Value::String(s.clone())),
            ExprKind::Array(items) => {
                let mut v = Vec::with_capacity(items.len());
                for i in items {
                    v.push(self.expr(i, scope)?);
                }
                CExpr::Array(v)
            }
            ExprKind::Object(pairs) => {
                let mut v = Vec::with_capacity(pairs.len());
                for (k, val) in pairs {
                    let key = match k {
                        ObjectKey::Static(s) => CKey::Static(s.clone()),
                        ObjectKey::Computed(ke) => CKey::Computed(self.expr(ke, scope)?),
                    };
                    v.push((key, self.expr(val, scope)?));
                }
                CExpr::Object(v)
            }
            ExprKind::Ident(name) => match scope.lookup(name) {
                Some(slot) => CExpr::Slot(slot),
                None => CExpr::Collection(self.resolve_collection(name, e.span)?),
            },
            ExprKind::BindVar(name) => CExpr::Const(self.bind(name, e.span)?),
            ExprKind::BindCollection(name) => {
                let coll = self.bind_collection(name, e.span)?;
                CExpr::Collection(self.resolve_collection(&coll, e.span)?)
            }
            ExprKind::Attribute(base, name) => {
                CExpr::Attr(Box::new(self.expr(base, scope)?), name.clone())
            }
            ExprKind::Index(base, idx) => CExpr::Index(
                Box::new(self.expr(base, scope)?),
                Box::new(self.expr(idx, scope)?),
            ),
            ExprKind::Expand {
                base,
                filter,
                limit,
                projection,
            } => {
                let base = Box::new(self.expr(base, scope)?);
                let slot = self.slot();
                scope.vars.push(("CURRENT".into(), slot));
                let filter = filter.as_ref().map(|f| self.expr(f, scope)).transpose();
                let limit = limit.as_ref().map(|f| self.expr(f, scope)).transpose();
                let projection = projection.as_ref().map(|f| self.expr(f, scope)).transpose();
                scope.vars.pop();
                CExpr::Expand {
                    base,
                    slot,
                    filter: filter?.map(Box::new),
                    limit: limit?.map(Box::new),
                    projection: projection?.map(Box::new),
                }
            }
            ExprKind::Flatten { base, depth } => {
                CExpr::Flatten(Box::new(self.expr(base, scope)?), *depth)
            }
            ExprKind::Unary(op, a) => match self.expr(a, scope)? {
                // `-5` is a constant, so the planner can use it like one.
                CExpr::Const(v) => CExpr::Const(crate::value::unary(*op, &v)),
                other => CExpr::Unary(*op, Box::new(other)),
            },
            ExprKind::Binary(BinaryOp::And, a, b) => CExpr::And(
                Box::new(self.expr(a, scope)?),
                Box::new(self.expr(b, scope)?),
            ),
            ExprKind::Binary(BinaryOp::Or, a, b) => CExpr::Or(
                Box::new(self.expr(a, scope)?),
                Box::new(self.expr(b, scope)?),
            ),
            ExprKind::Binary(op, a, b) => CExpr::Binary(
                *op,
                Box::new(self.expr(a, scope)?),
                Box::new(self.expr(b, scope)?),
            ),
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => CExpr::Ternary(
                Box::new(self.expr(cond, scope)?),
                then.as_ref()
                    .map(|t| self.expr(t, scope))
                    .transpose()?
                    .map(Box::new),
                Box::new(self.expr(otherwise, scope)?),
            ),
            ExprKind::Range(a, b) => CExpr::Range(
                Box::new(self.expr(a, scope)?),
                Box::new(self.expr(b, scope)?),
            ),
            ExprKind::Call { name, args } => {
                if !functions::exists(name) {
                    return Err(QueryError::semantic(
                        format!("unknown function '{name}()': see docs/aql.md for the functions ThemisDB supports"),
                        e.span,
                    ));
                }
                functions::check_arity(name, args.len())
                    .map_err(|m| QueryError::semantic(m, e.span))?;
                let mut cargs = Vec::with_capacity(args.len());
                for a in args {
                    cargs.push(self.expr(a, scope)?);
                }
                if functions::is_executor_function(name) {
                    if self.snap.is_none() {
                        return Err(QueryError::semantic(
                            format!(
                                "{name}() reads the database or the query's context and cannot be used in {}: use the attributes of `doc` and plain functions",
                                self.standalone
                            ),
                            e.span,
                        ));
                    }
                    CExpr::Context(name.clone(), cargs)
                } else {
                    CExpr::Call(name.clone(), cargs)
                }
            }
            ExprKind::Subquery(_) if self.snap.is_none() => {
                return Err(QueryError::semantic(
                    format!(
                        "subqueries cannot be used in {}: use array operators such as doc.items[* FILTER CURRENT.qty > 1] instead",
                        self.standalone
                    ),
                    e.span,
                ));
            }
            ExprKind::Subquery(q) => {
                let mut inner = scope.clone();
                let saved = std::mem::take(&mut self.sub_explain);
                self.depth += 1;
                let plan = self.query(q, &mut inner, self.depth);
                self.depth -= 1;
                let plan = plan?;
                self.sub_explain = saved;
                self.sub_explain.extend(plan.explain.iter().cloned());
                CExpr::Subquery(Arc::new(plan))
            }
        })
    }
}

/// The `OPTIONS` of data-modification operations that ThemisDB honours. Others
/// (`ignoreErrors`, `overwriteMode`, ...) are refused instead of silently ignored,
/// as are `mergeObjects: false` and `ignoreRevs: false`, which it does not implement.
pub(crate) const MODIFY_OPTIONS: &[&str] = &[
    "keepNull",
    "mergeObjects",
    "ignoreRevs",
    "waitForSync",
    "exclusive",
];

fn check_modify_options(options: Option<&CExpr>, span: Span) -> Result<(), QueryError> {
    let Some(CExpr::Object(pairs)) = options else {
        return Ok(());
    };
    for (key, value) in pairs {
        let CKey::Static(name) = key else {
            continue;
        };
        if !MODIFY_OPTIONS.contains(&name.as_str()) {
            return Err(QueryError::semantic(
                format!(
                    "OPTIONS {{ {name} }} is not supported; the supported options are {}",
                    MODIFY_OPTIONS.join(", ")
                ),
                span,
            ));
        }
        if matches!(name.as_str(), "mergeObjects" | "ignoreRevs")
            && matches!(value, CExpr::Const(Value::Bool(false)))
        {
            return Err(QueryError::semantic(
                format!("OPTIONS {{ {name}: false }} is not supported; only the default (true) is"),
                span,
            ));
        }
    }
    Ok(())
}

/// Functions allowed in `COLLECT … AGGREGATE`.
pub(crate) const AGGREGATES: &[&str] = &[
    "LENGTH",
    "COUNT",
    "MIN",
    "MAX",
    "SUM",
    "AVERAGE",
    "AVG",
    "MEDIAN",
    "UNIQUE",
    "SORTED_UNIQUE",
    "COUNT_DISTINCT",
    "COUNT_UNIQUE",
    "PUSH",
    "VARIANCE_POPULATION",
    "STDDEV_POPULATION",
];

/// `var.a.b` → `Some("a.b")`.
fn attribute_path(e: &Expr, var: &str) -> Option<String> {
    match &e.kind {
        ExprKind::Attribute(base, name) => match &base.kind {
            ExprKind::Ident(v) if v == var => Some(name.clone()),
            _ => attribute_path(base, var).map(|p| format!("{p}.{name}")),
        },
        _ => None,
    }
}

/// Whether `e` refers to the variable `var` anywhere.
fn mentions(e: &Expr, var: &str) -> bool {
    let any = |xs: &[Expr]| xs.iter().any(|x| mentions(x, var));
    match &e.kind {
        ExprKind::Ident(v) => v == var,
        ExprKind::Array(xs) => any(xs),
        ExprKind::Object(ps) => ps.iter().any(|(k, v)| {
            mentions(v, var) || matches!(k, ObjectKey::Computed(c) if mentions(c, var))
        }),
        ExprKind::Attribute(b, _) | ExprKind::Flatten { base: b, .. } | ExprKind::Unary(_, b) => {
            mentions(b, var)
        }
        ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) | ExprKind::Range(a, b) => {
            mentions(a, var) || mentions(b, var)
        }
        ExprKind::Expand {
            base,
            filter,
            limit,
            projection,
        } => {
            mentions(base, var)
                || [filter, limit, projection]
                    .iter()
                    .any(|x| x.as_ref().map(|x| mentions(x, var)).unwrap_or(false))
        }
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => {
            mentions(cond, var)
                || then.as_ref().map(|t| mentions(t, var)).unwrap_or(false)
                || mentions(otherwise, var)
        }
        ExprKind::Call { args, .. } => any(args),
        // Conservative: a subquery may refer to anything.
        ExprKind::Subquery(_) => true,
        _ => false,
    }
}

fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Le => BinaryOp::Ge,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Ge => BinaryOp::Le,
        other => other,
    }
}

/// A short rendering of an expression for EXPLAIN.
pub(crate) fn snippet(e: &Expr) -> String {
    let s = render(e);
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    }
}

fn render(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Null => "null".into(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Number(n) => crate::value::number(*n).to_string(),
        ExprKind::String(s) => Value::String(s.clone()).to_string(),
        ExprKind::Array(xs) => {
            format!("[{}]", xs.iter().map(render).collect::<Vec<_>>().join(", "))
        }
        ExprKind::Object(_) => "{…}".into(),
        ExprKind::Ident(v) => v.clone(),
        ExprKind::BindVar(v) => format!("@{v}"),
        ExprKind::BindCollection(v) => format!("@@{v}"),
        ExprKind::Attribute(b, n) => format!("{}.{n}", render(b)),
        ExprKind::Index(b, i) => format!("{}[{}]", render(b), render(i)),
        ExprKind::Expand { base, .. } => format!("{}[*]…", render(base)),
        ExprKind::Flatten { base, depth } => {
            format!("{}[{}]", render(base), "*".repeat(*depth as usize + 1))
        }
        ExprKind::Unary(op, a) => {
            let o = match op {
                ast::UnaryOp::Not => "NOT ",
                ast::UnaryOp::Neg => "-",
                ast::UnaryOp::Plus => "+",
            };
            format!("{o}{}", render(a))
        }
        ExprKind::Binary(op, a, b) => format!("{} {} {}", render(a), op_text(*op), render(b)),
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => match then {
            Some(t) => format!("{} ? {} : {}", render(cond), render(t), render(otherwise)),
            None => format!("{} ?: {}", render(cond), render(otherwise)),
        },
        ExprKind::Range(a, b) => format!("{}..{}", render(a), render(b)),
        ExprKind::Call { name, args } => format!(
            "{name}({})",
            args.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Subquery(_) => "(subquery)".into(),
    }
}

fn op_text(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Mod => "%",
        BinaryOp::Eq => "==",
        BinaryOp::Ne => "!=",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::In => "IN",
        BinaryOp::NotIn => "NOT IN",
        BinaryOp::Like => "LIKE",
        BinaryOp::NotLike => "NOT LIKE",
        BinaryOp::RegexMatch => "=~",
        BinaryOp::RegexNotMatch => "!~",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
    }
}
