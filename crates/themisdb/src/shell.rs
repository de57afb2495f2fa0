//! `themisdb shell`: an interactive AQL shell over the wire protocol.
//!
//! At a terminal it reads with line editing and history (`~/.themis_history`, or
//! `$THEMIS_HISTORY`); a statement may span lines and ends with `;` or an empty line.
//! With stdin not a terminal it reads statements from stdin, each ended by `;` (or by
//! the end of input), so it can be scripted and tested; it then exits 1 if any
//! statement failed. Lines starting with `.` are shell commands (`.help` lists them).
//!
//! Results show as an aligned table (columns: the top-level keys of the first 100
//! objects; anything else in a `value` column) or as pretty JSON, followed by the row
//! count and the server's stats. Errors are printed in full: a query error already
//! carries the query line with carets under the offending text.
//!
//! The runtime has a worker thread of its own so the connection notices a GOAWAY or
//! a close while the shell waits for input; a closed connection is reopened before the
//! next statement.

use std::collections::BTreeMap;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::TryStreamExt;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use serde_json::Value;
use themis_client::{Client, QueryStats};

use crate::query::{parse_bind, ConnectArgs};

/// Rows whose keys decide a table's columns.
const COLUMN_SAMPLE: usize = 100;
/// Longest cell shown, in characters; longer ones end with `…`.
const MAX_CELL: usize = 48;
const CONTINUATION_PROMPT: &str = "....> ";

const HELP: &str = "\
Statements: AQL, ended by ';' or an empty line; they may span lines.
Commands:
  .help                 this text
  .quit, .exit          leave (Ctrl-D too)
  .table                show results as a table (default)
  .json                 show results as pretty JSON
  .explain <query>      show the plan of <query> without running it
  .use <db>             send statements to database <db>
  .bind name=JSON       bind @name for the following statements (@@coll=users for a
                        collection); .bind alone lists the bindings
  .unbind [name]        remove one binding, or all
  .timing on|off        also show the round-trip time of each statement
Bind parameters are sent only to statements that mention them.";

#[derive(Args, Debug)]
pub struct ShellArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Start with results shown as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputMode {
    Table,
    Json,
}

/// What the input loop does after a line.
enum Flow {
    Continue,
    Quit,
}

struct Shell {
    connect: ConnectArgs,
    client: Client,
    database: String,
    mode: OutputMode,
    binds: BTreeMap<String, Value>,
    timing: bool,
    interactive: bool,
    /// Statements or commands that failed (the exit code when scripted).
    failures: usize,
}

pub fn run(args: ShellArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = runtime.block_on(args.connect.connect())?;
    let interactive = io::stdin().is_terminal();
    let mut shell = Shell {
        database: client.database_name().to_owned(),
        connect: args.connect,
        client,
        mode: if args.json {
            OutputMode::Json
        } else {
            OutputMode::Table
        },
        binds: BTreeMap::new(),
        timing: false,
        interactive,
        failures: 0,
    };
    if interactive {
        interactive_loop(&runtime, &mut shell)?;
    } else {
        script_loop(&runtime, &mut shell)?;
        if shell.failures > 0 {
            bail!(
                "{} statement{} failed",
                shell.failures,
                plural(shell.failures as u64)
            );
        }
    }
    Ok(())
}

fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("THEMIS_HISTORY") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".themis_history"))
}

fn interactive_loop(runtime: &tokio::runtime::Runtime, shell: &mut Shell) -> Result<()> {
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_dups(true)?
        .max_history_size(10_000)?
        .build();
    let mut editor: Editor<(), DefaultHistory> =
        Editor::with_config(config).context("cannot start the line editor")?;
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is the normal first run.
        let _ = editor.load_history(path);
    }
    let info = shell.client.server_info();
    println!(
        "Connected to ThemisDB {} at {} as {}. Type .help for help, .quit to leave.",
        info.server_version,
        shell.connect.url_host(),
        if info.username.is_empty() {
            "(anonymous)"
        } else {
            &info.username
        }
    );
    let mut pending = StatementBuffer::default();
    loop {
        let prompt = if pending.is_blank() {
            format!("themis:{}> ", shell.database)
        } else {
            CONTINUATION_PROMPT.to_owned()
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                // Ctrl-C drops the statement being typed, like a shell.
                pending = StatementBuffer::default();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading input"),
        };
        let mut statements = Vec::new();
        if pending.is_blank() && line.trim_start().starts_with('.') {
            let _ = editor.add_history_entry(line.trim());
            match runtime.block_on(shell.command(line.trim())) {
                Flow::Continue => continue,
                Flow::Quit => break,
            }
        } else if line.trim().is_empty() && !pending.is_open() {
            statements.extend(pending.finish());
        } else {
            pending.push_line(&line);
            statements.extend(pending.take_complete());
        }
        for statement in statements {
            let _ = editor.add_history_entry(format!("{statement};"));
            runtime.block_on(async {
                tokio::select! {
                    () = shell.statement(&statement) => {}
                    _ = tokio::signal::ctrl_c() => eprintln!("cancelled"),
                }
            });
        }
    }
    if let Some(path) = &history {
        if let Err(e) = editor.save_history(path) {
            eprintln!("warning: could not save history to {}: {e}", path.display());
        }
    }
    Ok(())
}

fn script_loop(runtime: &tokio::runtime::Runtime, shell: &mut Shell) -> Result<()> {
    let mut pending = StatementBuffer::default();
    for line in io::stdin().lock().lines() {
        let line = line.context("reading statements from stdin")?;
        if pending.is_blank() && line.trim_start().starts_with('.') {
            match runtime.block_on(shell.command(line.trim())) {
                Flow::Continue => continue,
                Flow::Quit => return Ok(()),
            }
        }
        pending.push_line(&line);
        for statement in pending.take_complete() {
            runtime.block_on(shell.statement(&statement));
        }
    }
    for statement in pending.finish() {
        runtime.block_on(shell.statement(&statement));
    }
    Ok(())
}

impl Shell {
    /// Reopens the connection if the server closed it (idle timeout, restart).
    async fn ensure_connected(&mut self) -> Result<()> {
        if self.client.is_closed() {
            eprintln!("(the connection was closed; reconnecting)");
            self.client = self.connect.connect().await?;
        }
        Ok(())
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        self.failures += 1;
        eprintln!("error: {e}");
    }

    /// Runs one AQL statement and prints its results.
    async fn statement(&mut self, aql: &str) {
        if let Err(e) = self.try_statement(aql).await {
            self.fail(format!("{e:#}"));
        }
    }

    async fn try_statement(&mut self, aql: &str) -> Result<()> {
        self.ensure_connected().await?;
        let started = Instant::now();
        let mut query = self.client.database(&self.database).query(aql);
        for (name, value) in &self.binds {
            if mentions_bind(aql, name) {
                query = query.bind(name, value)?;
            }
        }
        let mut rows = query.stream::<Value>().await?;
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let mut count = 0u64;
        match self.mode {
            OutputMode::Json => {
                while let Some(row) = rows.try_next().await? {
                    count += 1;
                    writeln!(out, "{}", serde_json::to_string_pretty(&row)?)?;
                }
            }
            OutputMode::Table => {
                let mut all = Vec::new();
                while let Some(row) = rows.try_next().await? {
                    all.push(row);
                }
                count = all.len() as u64;
                if !all.is_empty() {
                    write!(out, "{}", render_table(&all))?;
                }
            }
        }
        writeln!(out, "{}", summary(count, rows.stats()))?;
        if self.timing {
            writeln!(out, "Time: {} round trip", millis(started.elapsed()))?;
        }
        out.flush()?;
        Ok(())
    }

    /// Runs one `.command`.
    async fn command(&mut self, line: &str) -> Flow {
        let (name, rest) = match line.split_once(char::is_whitespace) {
            Some((name, rest)) => (name, rest.trim()),
            None => (line, ""),
        };
        match name {
            ".help" | ".h" | ".?" => println!("{HELP}"),
            ".quit" | ".exit" | ".q" => return Flow::Quit,
            ".json" => self.mode = OutputMode::Json,
            ".table" => self.mode = OutputMode::Table,
            ".timing" => match rest {
                "on" => self.timing = true,
                "off" => self.timing = false,
                "" => println!("timing is {}", if self.timing { "on" } else { "off" }),
                other => self.fail(format!(".timing takes on or off, not {other:?}")),
            },
            ".explain" => {
                let aql = rest.trim_end_matches(';').trim();
                if aql.is_empty() {
                    self.fail(".explain needs a query: .explain FOR d IN docs RETURN d");
                } else if let Err(e) = self.explain(aql).await {
                    self.fail(format!("{e:#}"));
                }
            }
            ".use" => {
                if rest.is_empty() {
                    println!("using database {}", self.database);
                } else if let Err(e) = self.use_database(rest).await {
                    self.fail(format!("{e:#}"));
                }
            }
            ".bind" => {
                if rest.is_empty() {
                    if self.binds.is_empty() {
                        println!("no bind parameters");
                    }
                    for (name, value) in &self.binds {
                        println!("@{name} = {value}");
                    }
                } else {
                    match parse_bind(rest) {
                        Ok((name, value)) => {
                            self.binds.insert(name, value);
                        }
                        Err(e) => self.fail(format!("{e:#}")),
                    }
                }
            }
            ".unbind" => {
                if rest.is_empty() {
                    self.binds.clear();
                } else {
                    let key = rest.strip_prefix('@').unwrap_or(rest);
                    if self.binds.remove(key).is_none() {
                        self.fail(format!("no bind parameter {rest:?} (.bind lists them)"));
                    }
                }
            }
            other => self.fail(format!("unknown command {other}; .help lists the commands")),
        }
        Flow::Continue
    }

    async fn explain(&mut self, aql: &str) -> Result<()> {
        self.ensure_connected().await?;
        let mut query = self.client.database(&self.database).query(aql);
        for (name, value) in &self.binds {
            if mentions_bind(aql, name) {
                query = query.bind(name, value)?;
            }
        }
        let plan = query.explain().await?;
        println!("{}", plan.trim_end());
        Ok(())
    }

    async fn use_database(&mut self, name: &str) -> Result<()> {
        self.ensure_connected().await?;
        // Asking for its collections proves the database exists and we may use it.
        self.client
            .database(name)
            .list_collections()
            .await
            .with_context(|| format!("cannot use database {name:?}"))?;
        self.database = name.to_owned();
        if !self.interactive {
            return Ok(());
        }
        println!("using database {name}");
        Ok(())
    }
}

impl ConnectArgs {
    /// `host:port` this shell connects to, for the greeting.
    fn url_host(&self) -> String {
        self.target()
            .map(|t| t.addr())
            .unwrap_or_else(|_| self.url.clone())
    }
}

/// Whether `aql` mentions bind parameter `name` (`@name`, or `@@coll` for the wire
/// name `@coll`). Textual, so a mention inside a string counts too.
fn mentions_bind(aql: &str, name: &str) -> bool {
    let needle = format!("@{name}");
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    aql.match_indices(&needle).any(|(at, _)| {
        let before_ok = !aql[..at].ends_with('@');
        let after_ok = !aql[at + needle.len()..].starts_with(is_ident);
        before_ok && after_ok
    })
}

/// Collects input lines and cuts them into statements at each `;` that is not inside
/// a string, a quoted name or a comment.
#[derive(Default)]
struct StatementBuffer {
    text: String,
}

impl StatementBuffer {
    fn push_line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// Whether nothing but whitespace is pending.
    fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// Whether the text ends inside a string, quoted name or block comment (where an
    /// empty line is part of the statement).
    fn is_open(&self) -> bool {
        statement_ends(&self.text).1
    }

    /// Removes and returns every statement ended by `;` (without the `;`).
    fn take_complete(&mut self) -> Vec<String> {
        let (ends, _) = statement_ends(&self.text);
        let mut statements = Vec::new();
        let mut start = 0;
        for end in ends {
            let statement = self.text[start..end].trim();
            if !statement.is_empty() {
                statements.push(statement.to_owned());
            }
            start = end + 1;
        }
        self.text.drain(..start);
        statements
    }

    /// Every statement pending, the unterminated rest included (the input ended, or
    /// an empty line ended the statement).
    fn finish(&mut self) -> Vec<String> {
        let mut statements = self.take_complete();
        let rest = std::mem::take(&mut self.text);
        let rest = rest.trim();
        if !rest.is_empty() {
            statements.push(rest.to_owned());
        }
        statements
    }
}

/// Byte offsets of the `;`s that end statements in `text`, and whether `text` ends
/// inside a string or comment.
fn statement_ends(text: &str) -> (Vec<usize>, bool) {
    #[derive(PartialEq)]
    enum State {
        Code,
        Quoted(char),
        LineComment,
        BlockComment,
    }
    let mut ends = Vec::new();
    let mut state = State::Code;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match state {
            State::Code => match c {
                ';' => ends.push(i),
                '"' | '\'' | '`' | '\u{b4}' => state = State::Quoted(c),
                '/' if chars.peek().map(|&(_, n)| n) == Some('/') => {
                    chars.next();
                    state = State::LineComment;
                }
                '/' if chars.peek().map(|&(_, n)| n) == Some('*') => {
                    chars.next();
                    state = State::BlockComment;
                }
                _ => {}
            },
            State::Quoted(q) => {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    state = State::Code;
                }
            }
            State::LineComment => {
                if c == '\n' {
                    state = State::Code;
                }
            }
            State::BlockComment => {
                if c == '*' && chars.peek().map(|&(_, n)| n) == Some('/') {
                    chars.next();
                    state = State::Code;
                }
            }
        }
    }
    let open = matches!(state, State::Quoted(_) | State::BlockComment);
    (ends, open)
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// `N rows (stats: scanned X, index lookups Y, Z ms)`, with writes when there were any.
fn summary(rows: u64, stats: &QueryStats) -> String {
    let writes = if stats.writes_executed > 0 {
        format!(", writes {}", stats.writes_executed)
    } else {
        String::new()
    };
    format!(
        "{rows} row{} (stats: scanned {}, index lookups {}{writes}, {})",
        plural(rows),
        stats.documents_scanned,
        stats.index_lookups,
        millis(stats.execution_time)
    )
}

/// The column that holds rows that are not objects.
const VALUE_COLUMN: &str = "value";

/// An aligned text table of `rows`.
fn render_table(rows: &[Value]) -> String {
    let mut columns: Vec<String> = Vec::new();
    let mut has_non_objects = false;
    for row in rows.iter().take(COLUMN_SAMPLE) {
        match row {
            Value::Object(map) => {
                for key in map.keys() {
                    if !columns.iter().any(|c| c == key) {
                        columns.push(key.clone());
                    }
                }
            }
            _ => has_non_objects = true,
        }
    }
    // Rows past the sample that are not objects still need somewhere to go.
    has_non_objects |= rows.iter().skip(COLUMN_SAMPLE).any(|r| !r.is_object());
    let value_column = if has_non_objects || columns.is_empty() {
        let mut name = VALUE_COLUMN.to_owned();
        while columns.contains(&name) {
            name.insert(0, '_');
        }
        columns.push(name.clone());
        Some(name)
    } else {
        None
    };

    // (text, right-aligned)
    let cells: Vec<Vec<(String, bool)>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|col| match row {
                    Value::Object(map) => map.get(col).map(cell).unwrap_or_default(),
                    other if Some(col) == value_column.as_ref() => cell(other),
                    _ => Default::default(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, col)| {
            cells
                .iter()
                .map(|r| r[i].0.chars().count())
                .chain([truncate(col).chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let line = |row: &[(String, bool)]| {
        let mut s = String::from("|");
        for ((text, right), w) in row.iter().zip(&widths) {
            let pad = w - text.chars().count();
            s.push(' ');
            if *right {
                s.push_str(&" ".repeat(pad));
                s.push_str(text);
            } else {
                s.push_str(text);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str(" |");
        }
        s.push('\n');
        s
    };
    let header: Vec<(String, bool)> = columns.iter().map(|c| (truncate(c), false)).collect();
    let mut out = String::new();
    out.push_str(&rule);
    out.push_str(&line(&header));
    out.push_str(&rule);
    for row in &cells {
        out.push_str(&line(row));
    }
    out.push_str(&rule);
    out
}

/// A value as a table cell: strings bare, numbers right-aligned, nested values as
/// compact JSON; control characters escaped and long text cut so rows stay aligned.
fn cell(v: &Value) -> (String, bool) {
    let (text, right) = match v {
        Value::String(s) => (s.clone(), false),
        Value::Number(n) => (n.to_string(), true),
        other => (other.to_string(), false),
    };
    (truncate(&text), right)
}

fn truncate(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    for c in text.chars() {
        let piece: String = match c {
            '\n' => "\\n".into(),
            '\r' => "\\r".into(),
            '\t' => "\\t".into(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        };
        let n = piece.chars().count();
        if count + n > MAX_CELL - 1 {
            out.push('…');
            return out;
        }
        count += n;
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statements_split_at_semicolons_outside_strings_and_comments() {
        let mut b = StatementBuffer::default();
        b.push_line("RETURN 'a;b'; RETURN \"c\\\";\" // x;y");
        b.push_line("; RETURN `we;ird` /* ; */ ;  FOR d IN docs");
        assert_eq!(
            b.take_complete(),
            vec![
                "RETURN 'a;b'",
                "RETURN \"c\\\";\" // x;y",
                "RETURN `we;ird` /* ; */"
            ]
        );
        assert!(!b.is_blank());
        b.push_line("  RETURN d");
        assert!(b.take_complete().is_empty());
        assert_eq!(b.finish(), vec!["FOR d IN docs\n  RETURN d"]);
        assert!(b.is_blank());
        assert!(b.finish().is_empty());
        b.push_line(";;");
        assert!(b.take_complete().is_empty());
        assert!(b.is_blank());
    }

    #[test]
    fn binds_are_sent_only_where_mentioned() {
        assert!(mentions_bind("FILTER u.age > @min RETURN u", "min"));
        assert!(!mentions_bind("FILTER u.age > @minimum RETURN u", "min"));
        assert!(!mentions_bind("FOR u IN @@min RETURN u", "min"));
        assert!(mentions_bind("FOR u IN @@coll RETURN u", "@coll"));
        assert!(!mentions_bind("FOR u IN @coll RETURN u", "@coll"));
    }

    #[test]
    fn table_has_union_columns_and_a_value_column() {
        let rows = vec![
            json!({"name": "Ann", "age": 30}),
            json!({"name": "Bob", "city": "Oslo"}),
            json!(7),
        ];
        let t = render_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[1], "| name | age | city | value |");
        assert_eq!(lines[3], "| Ann  |  30 |      |       |");
        assert_eq!(lines[4], "| Bob  |     | Oslo |       |");
        assert_eq!(lines[5], "|      |     |      |     7 |");
        assert!(lines
            .iter()
            .all(|l| l.chars().count() == lines[0].chars().count()));

        let t = render_table(&[json!("x"), json!(null), json!([1, 2])]);
        assert!(t.contains("| value |"), "{t}");
        assert!(t.contains("| null  |"), "{t}");
        assert!(t.contains("| [1,2] |"), "{t}");
    }

    #[test]
    fn long_and_multiline_cells_are_cut_and_escaped() {
        let long = "x".repeat(200);
        let (c, _) = cell(&json!(long));
        assert_eq!(c.chars().count(), MAX_CELL);
        assert!(c.ends_with('…'));
        assert_eq!(cell(&json!("a\nb")).0, "a\\nb");
    }

    #[test]
    fn summary_line() {
        let stats = QueryStats {
            execution_time: Duration::from_micros(1500),
            documents_scanned: 10,
            index_lookups: 2,
            ..QueryStats::default()
        };
        assert_eq!(
            summary(1, &stats),
            "1 row (stats: scanned 10, index lookups 2, 1.50 ms)"
        );
        let stats = QueryStats {
            writes_executed: 3,
            ..stats
        };
        assert!(
            summary(3, &stats).starts_with("3 rows (stats: scanned 10, index lookups 2, writes 3,")
        );
    }
}
