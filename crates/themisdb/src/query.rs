//! `themisdb query`: run one AQL query and print its results, for scripts.
//!
//! Results go to stdout as they arrive, one compact JSON document per line (`--jsonl`,
//! the default) or as one pretty JSON array (`--json`). A failed query prints the
//! server's error, with the query line and carets under the offending text, on stderr
//! and exits 1.
//!
//! Also home to what `themisdb shell` shares with it: [`ConnectArgs`] (where and as
//! whom to connect) and [`parse_bind`] (`name=JSON` bind parameters).

use std::io::{self, Read, Write};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::TryStreamExt;
use serde_json::Value;
use themis_client::{Auth, Client, ClientOptions, ConnectTarget};

/// Where and as whom to connect: a URL, with flags that override its parts.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Server URL: themis://user:password@host:port/database (or set THEMIS_URL).
    #[arg(
        long,
        env = "THEMIS_URL",
        default_value = "themis://root@127.0.0.1:8766"
    )]
    pub url: String,
    /// Host to connect to (overrides the URL's).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Port to connect to (overrides the URL's).
    #[arg(long, short = 'p', value_name = "N")]
    pub port: Option<u16>,
    /// User name (overrides the URL's).
    #[arg(long, short = 'u', value_name = "NAME")]
    pub user: Option<String>,
    /// Password (overrides the URL's; or set THEMIS_PASSWORD).
    #[arg(long, env = "THEMIS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Database to use (overrides the URL's; default _system).
    #[arg(long, short = 'd', value_name = "NAME")]
    pub database: Option<String>,
    /// Log in with this API key instead of a password (or set THEMIS_API_KEY).
    #[arg(
        long,
        env = "THEMIS_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
}

impl ConnectArgs {
    /// The URL's target with `--host` and `--port` applied.
    pub fn target(&self) -> Result<ConnectTarget> {
        let mut target = ConnectTarget::parse(&self.url)?;
        if let Some(host) = &self.host {
            target.host = host.clone();
        }
        if let Some(port) = self.port {
            target.port = port;
        }
        Ok(target)
    }

    /// The address and client options these flags describe: the URL's parts
    /// (credentials, database, TLS and timeout settings), overridden by the flags; an
    /// API key replaces the password.
    pub fn options(&self) -> Result<(String, ClientOptions)> {
        let target = self.target()?;
        let addr = target.addr();
        let auth = match self.api_key.as_deref().map(str::trim) {
            Some("") => bail!("the API key given with --api-key (or THEMIS_API_KEY) is empty"),
            Some(key) => Auth::ApiKey(key.to_owned()),
            None => Auth::Password,
        };
        // The URL's query settings (TLS, timeouts) apply as in `Client::connect_with`.
        let options = target.params.apply_to(ClientOptions {
            auth,
            username: self.user.clone().or(target.username).unwrap_or_default(),
            password: self
                .password
                .clone()
                .or(target.password)
                .unwrap_or_default(),
            database: self.database.clone().or(target.database),
            client_name: format!("themisdb-cli/{}", env!("CARGO_PKG_VERSION")),
            ..ClientOptions::default()
        });
        Ok((addr, options))
    }

    /// Connects and handshakes.
    pub async fn connect(&self) -> Result<Client> {
        let (addr, options) = self.options()?;
        // The client's errors name the address and what to check.
        Ok(Client::connect_with(&addr, options).await?)
    }
}

/// Parses a `name=JSON` bind parameter into the wire name and its value.
///
/// `min=30` binds `@min`; `@@coll=users` (or `@coll=users`) binds the collection
/// parameter `@@coll`, whose value may be a bare collection name. Any other value
/// must be JSON: quote strings (`name='"Ann"'`).
pub fn parse_bind(spec: &str) -> Result<(String, Value)> {
    let Some((name, raw)) = spec.split_once('=') else {
        bail!("bind parameter {spec:?} has no '=': write name=JSON, e.g. min=30 or name='\"Ann\"'");
    };
    let name = name.trim();
    let raw = raw.trim();
    let (key, is_collection) = match name.strip_prefix("@@") {
        Some(coll) => (format!("@{coll}"), true),
        None => {
            // `@coll` is ArangoDB's wire spelling of `@@coll`.
            let is_collection = name.starts_with('@');
            (name.to_owned(), is_collection)
        }
    };
    let bare = key.trim_start_matches('@');
    if bare.is_empty()
        || !bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("bind parameter name {name:?} is not a valid name: use letters, digits and '_'");
    }
    let value = match serde_json::from_str::<Value>(raw) {
        Ok(v) => v,
        Err(_) if is_collection && !raw.is_empty() => Value::String(raw.to_owned()),
        Err(e) => bail!(
            "the value of bind parameter {name:?} is not JSON ({e}): quote strings, e.g. {name}='\"text\"'"
        ),
    };
    Ok((key, value))
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Bind parameter, as name=JSON (repeat for more): --bind min=30 --bind @@coll=users
    #[arg(long = "bind", short = 'b', value_name = "NAME=JSON")]
    binds: Vec<String>,
    /// Print the results as one pretty JSON array.
    #[arg(long, conflicts_with = "jsonl")]
    json: bool,
    /// Print one compact JSON document per line (the default).
    #[arg(long)]
    jsonl: bool,
    /// Print the query plan instead of running the query.
    #[arg(long)]
    explain: bool,
    /// Results per round trip (default: the server's, 1000).
    #[arg(long, value_name = "N")]
    batch_size: Option<u32>,
    /// The AQL query; "-" reads it from stdin.
    #[arg(value_name = "AQL")]
    aql: String,
}

pub fn run(args: QueryArgs) -> Result<()> {
    let aql = if args.aql == "-" {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("reading the query from stdin")?;
        text
    } else {
        args.aql.clone()
    };
    let aql = aql.trim().trim_end_matches(';').trim_end().to_owned();
    if aql.is_empty() {
        bail!("the query is empty: give it as an argument, e.g. themisdb query 'FOR d IN docs RETURN d'");
    }
    let binds = args
        .binds
        .iter()
        .map(|b| parse_bind(b))
        .collect::<Result<Vec<_>>>()?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let client = args.connect.connect().await?;
        let mut query = client.query(aql);
        for (name, value) in binds {
            query = query.bind(&name, value)?;
        }
        if let Some(n) = args.batch_size {
            query = query.batch_size(n);
        }
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let written = if args.explain {
            let plan = query.explain().await?;
            write!(out, "{plan}")
        } else {
            let mut rows = query.stream::<Value>().await?;
            if args.json {
                let mut all = Vec::new();
                while let Some(row) = rows.try_next().await? {
                    all.push(row);
                }
                serde_json::to_writer_pretty(&mut out, &all)
                    .map_err(io::Error::from)
                    .and_then(|()| writeln!(out))
            } else {
                let mut result = Ok(());
                while let Some(row) = rows.try_next().await? {
                    result = serde_json::to_writer(&mut out, &row)
                        .map_err(io::Error::from)
                        .and_then(|()| writeln!(out));
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
        };
        match written.and_then(|()| out.flush()) {
            // `themisdb query ... | head`: the reader has what it wanted.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing results to stdout"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binds() {
        assert_eq!(parse_bind("min=30").unwrap(), ("min".into(), json!(30)));
        assert_eq!(
            parse_bind("name=\"Ann\"").unwrap(),
            ("name".into(), json!("Ann"))
        );
        assert_eq!(
            parse_bind("tags = [1, \"a\"]").unwrap(),
            ("tags".into(), json!([1, "a"]))
        );
        assert_eq!(
            parse_bind("@@coll=users").unwrap(),
            ("@coll".into(), json!("users"))
        );
        assert_eq!(
            parse_bind("@coll=\"users\"").unwrap(),
            ("@coll".into(), json!("users"))
        );
        let e = parse_bind("name=Ann").unwrap_err().to_string();
        assert!(e.contains("quote strings"), "{e}");
        assert!(parse_bind("min").unwrap_err().to_string().contains("'='"));
        assert!(parse_bind("=1").is_err());
        assert!(parse_bind("a b=1").is_err());
    }
}
