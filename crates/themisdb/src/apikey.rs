//! `themisdb apikey`: API keys, to log in without a password (`--api-key` /
//! `THEMIS_API_KEY`, or `Auth::ApiKey` in the client library).
//!
//! * `themisdb apikey create [--user U] [--name LABEL] [--expires 30d] [--json]`:
//!   prints the key, the only time it is shown.
//! * `themisdb apikey list [--user U | --all] [--json]`
//! * `themisdb apikey revoke ID_OR_KEY [--json]`
//!
//! Logging in works as for `themisdb user` ([`Login`]); since `--user` names the key's
//! owner here, the login user is `--login-user` (or the URL's user).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::{Args, Subcommand};
use themis_client::{ApiKeyInfo, ApiKeyOptions};

use crate::user::{block_on, format_time, print_json, table, write_stdout, Login};

#[derive(Args, Debug)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    command: ApiKeyCommand,
}

#[derive(Subcommand, Debug)]
enum ApiKeyCommand {
    /// Make an API key and print it (it is shown this once only).
    Create(CreateArgs),
    /// List API keys: yours, another user's (--user), or everyone's (--all).
    List(ListArgs),
    /// Revoke an API key, given its id or the whole key.
    Revoke {
        #[command(flatten)]
        login: Login,
        /// The key's id (as `apikey list` shows it) or the whole key.
        id_or_key: String,
        /// Print the revoked key's description as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
#[command(mut_arg("user", |a| a.long("login-user").short(None)
    .help("User to log in as (overrides the URL's)")))]
struct CreateArgs {
    #[command(flatten)]
    login: Login,
    /// Whose key (default: yours; others need a superuser).
    #[arg(long = "user", id = "owner", value_name = "USER")]
    owner: Option<String>,
    /// A label, to tell keys apart (e.g. ci, backup).
    #[arg(long, value_name = "LABEL")]
    name: Option<String>,
    /// Lifetime: 30d, 12h, 90m or 3600s (default: never expires).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires: Option<Duration>,
    /// Print the server's JSON (with the key) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(mut_arg("user", |a| a.long("login-user").short(None)
    .help("User to log in as (overrides the URL's)")))]
struct ListArgs {
    #[command(flatten)]
    login: Login,
    /// List this user's keys (default: yours).
    #[arg(
        long = "user",
        id = "owner",
        value_name = "USER",
        conflicts_with = "all"
    )]
    owner: Option<String>,
    /// List everyone's keys (superuser only).
    #[arg(long)]
    all: bool,
    /// Print the keys as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Parses `30d`, `12h`, `90m`, `3600s` (a whole number and one unit; must be > 0).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let usage = || format!("{text:?} is not a duration: write e.g. 30d, 12h, 90m or 3600s");
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(usage)?;
    let (number, unit) = text.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| usage())?;
    let seconds_per = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(usage()),
    };
    if n == 0 {
        return Err(format!("{text:?} is zero: give a lifetime of at least 1s"));
    }
    n.checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

pub fn run(args: ApiKeyArgs) -> Result<()> {
    match args.command {
        ApiKeyCommand::Create(args) => block_on(async move {
            let client = args.login.connect().await?;
            let new = client
                .create_api_key(&ApiKeyOptions {
                    username: args.owner.clone(),
                    name: args.name.clone().unwrap_or_default(),
                    expires_in: args.expires,
                })
                .await?;
            if args.json {
                return print_json(&new);
            }
            let info = &new.info;
            let mut out = format!("created API key {} for {}", info.id, info.username);
            if !info.name.is_empty() {
                out.push_str(&format!(" ({})", info.name));
            }
            match info.expires_at_ms {
                Some(at) => out.push_str(&format!(", expires {}", format_time(at))),
                None => out.push_str(", never expires"),
            }
            out.push_str(&format!(
                ":\n\n    {}\n\nStore it now: it will not be shown again.\n",
                new.key
            ));
            write_stdout(&out)
        }),
        ApiKeyCommand::List(args) => block_on(async move {
            let username = if args.all {
                Some("*")
            } else {
                args.owner.as_deref()
            };
            let keys = args.login.connect().await?.list_api_keys(username).await?;
            if args.json {
                print_json(&keys)
            } else {
                print_keys(&keys)
            }
        }),
        ApiKeyCommand::Revoke {
            login,
            id_or_key,
            json,
        } => block_on(async move {
            let info = login.connect().await?.revoke_api_key(&id_or_key).await?;
            if json {
                return print_json(&info);
            }
            write_stdout(&format!(
                "revoked API key {} of {}{}\n",
                info.id,
                info.username,
                if info.name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", info.name)
                }
            ))
        }),
    }
}

fn print_keys(keys: &[ApiKeyInfo]) -> Result<()> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let rows: Vec<Vec<String>> = keys.iter().map(|k| key_row(k, now_ms)).collect();
    let mut out = table(
        &["id", "user", "name", "created", "expires", "status"],
        &rows,
    );
    out.push_str(&format!(
        "{} key{}\n",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" }
    ));
    write_stdout(&out)
}

fn key_row(key: &ApiKeyInfo, now_ms: u64) -> Vec<String> {
    let status = if key.revoked {
        "revoked"
    } else if !key.is_usable_at(now_ms) {
        "expired"
    } else {
        "active"
    };
    vec![
        key.id.clone(),
        key.username.clone(),
        if key.name.is_empty() {
            "-".to_owned()
        } else {
            key.name.clone()
        },
        format_time(key.created_at_ms),
        key.expires_at_ms
            .map_or_else(|| "never".to_owned(), format_time),
        status.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ApiKeyCommand,
    }

    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_duration("3600s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 1s "), Ok(Duration::from_secs(1)));
        for bad in ["", "30", "d", "30w", "1.5h", "-1d", "3 d", "30dd", "h12"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("30d, 12h"), "{bad:?}: {e}");
        }
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("999999999999999999d")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn flags() {
        let cli = Cli::try_parse_from([
            "apikey",
            "create",
            "--user",
            "alice",
            "--name",
            "ci",
            "--expires",
            "30d",
            "--login-user",
            "root",
            "--url",
            "h:1",
        ])
        .unwrap();
        let ApiKeyCommand::Create(args) = cli.command else {
            panic!("not create")
        };
        assert_eq!(args.owner.as_deref(), Some("alice"));
        assert_eq!(args.name.as_deref(), Some("ci"));
        assert_eq!(args.expires, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(args.login.options().unwrap().1.username, "root");
        assert!(Cli::try_parse_from(["apikey", "create", "--expires", "soon"]).is_err());
        assert!(Cli::try_parse_from(["apikey", "list", "--user", "a", "--all"]).is_err());
        let cli = Cli::try_parse_from(["apikey", "list", "--all"]).unwrap();
        assert!(matches!(
            cli.command,
            ApiKeyCommand::List(ListArgs { all: true, .. })
        ));
        let cli = Cli::try_parse_from(["apikey", "revoke", "themis_0123456789ab_x"]).unwrap();
        assert!(
            matches!(cli.command, ApiKeyCommand::Revoke { ref id_or_key, .. } if id_or_key == "themis_0123456789ab_x")
        );
    }

    #[test]
    fn rows() {
        let key: ApiKeyInfo = serde_json::from_value(serde_json::json!({"id":"0123456789ab","prefix":"themis_0123456789ab","username":"alice","name":"","created_at_ms":0,"expires_at_ms":1000,"revoked":false,"revoked_at_ms":null})).unwrap();
        assert_eq!(
            key_row(&key, 5),
            vec![
                "0123456789ab",
                "alice",
                "-",
                "1970-01-01 00:00:00 UTC",
                "1970-01-01 00:00:01 UTC",
                "active"
            ]
        );
        assert_eq!(key_row(&key, 1000)[5], "expired");
    }
}
