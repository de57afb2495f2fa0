//! `themisdb user`: user accounts and their roles.
//!
//! * `themisdb user list [--json]`: a table of name, superuser, roles.
//! * `themisdb user create NAME [--password P | --password-stdin] [--superuser]
//!   [--role DB=ROLE]...`
//! * `themisdb user drop NAME`
//! * `themisdb user passwd NAME [--password P | --password-stdin]`
//! * `themisdb user grant NAME DB ROLE`, `themisdb user revoke NAME DB`
//! * `themisdb user superuser NAME true|false`
//! * `themisdb user end-sessions [NAME]`
//! * `themisdb user whoami [--json]`
//!
//! Every subcommand logs in like `themisdb query` ([`ConnectArgs`]: `--url` /
//! `THEMIS_URL` with its TLS settings, `--user`, `--password` / `THEMIS_PASSWORD`,
//! or `--api-key` / `THEMIS_API_KEY`). In `create` and `passwd`,
//! `--password` is the password being set, so the login password is
//! `--login-password` there (or `THEMIS_PASSWORD`, or the URL's).
//!
//! A password not given as a flag is read from stdin's first line when stdin is not a
//! terminal (`--password-stdin` reads it from stdin always); an empty one is refused.
//!
//! Also home to what `themisdb apikey` shares: [`Login`], [`block_on`] and
//! [`format_time`].

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use themis_client::{Auth, Client, Role, UserInfo, UserOptions};

use crate::query::ConnectArgs;

/// Where and as whom to connect: the flags of every command ([`ConnectArgs`]).
pub type Login = ConnectArgs;

/// Runs `future` on a single-threaded runtime.
pub fn block_on<F: std::future::Future<Output = Result<()>>>(future: F) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// List users: name, superuser, roles (a non-superuser sees only themselves).
    List {
        #[command(flatten)]
        login: Login,
        /// Print the users as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Create a user (superuser only).
    Create(CreateArgs),
    /// Drop a user, their API keys and sessions (superuser only).
    Drop {
        #[command(flatten)]
        login: Login,
        /// The user to drop.
        name: String,
    },
    /// Set a user's password (your own, or anyone's as superuser).
    Passwd(PasswdArgs),
    /// Grant a user a role on a database ("*" = every database), replacing the one
    /// they had there.
    Grant {
        #[command(flatten)]
        login: Login,
        /// The user.
        name: String,
        /// The database, or "*" for every database.
        #[arg(id = "db", value_name = "DB")]
        database: String,
        /// admin, readwrite or readonly.
        role: Role,
    },
    /// Take away the role a user has on a database ("*" = the every-database grant).
    Revoke {
        #[command(flatten)]
        login: Login,
        /// The user.
        name: String,
        /// The database, or "*".
        #[arg(id = "db", value_name = "DB")]
        database: String,
    },
    /// Show who you are logged in as, how, and your roles.
    Whoami {
        #[command(flatten)]
        login: Login,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a user a superuser, or not (superuser only). Taking it away ends the
    /// user's sessions.
    Superuser {
        #[command(flatten)]
        login: Login,
        /// The user.
        name: String,
        /// true or false.
        #[arg(action = clap::ArgAction::Set)]
        on: bool,
    },
    /// End every session of a user (default: your own, this one included): their
    /// connections close and their session tokens stop working.
    EndSessions {
        #[command(flatten)]
        login: Login,
        /// The user (others need a superuser).
        name: Option<String>,
    },
}

/// The password being set, from a flag or stdin.
#[derive(Args, Debug)]
struct NewPassword {
    /// The user's password (without it: read from stdin's first line when stdin is
    /// not a terminal).
    #[arg(
        long = "password",
        id = "new_password",
        value_name = "PASSWORD",
        conflicts_with = "password_stdin"
    )]
    password: Option<String>,
    /// Read the user's password from stdin's first line.
    #[arg(long)]
    password_stdin: bool,
}

impl NewPassword {
    fn read(&self) -> Result<String> {
        let password = match &self.password {
            Some(p) => p.clone(),
            None if self.password_stdin || !io::stdin().is_terminal() => {
                let mut line = String::new();
                io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from stdin")?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            }
            None => bail!(
                "no password given: use --password PASSWORD or --password-stdin, or pipe it \
                 in (printf '%s\\n' \"$PW\" | themisdb user ...)"
            ),
        };
        check_password(password)
    }
}

fn check_password(password: String) -> Result<String> {
    if password.is_empty() {
        bail!("the password is empty: give a non-empty password");
    }
    Ok(password)
}

#[derive(Args, Debug)]
#[command(mut_arg("password", |a| a.long("login-password")
    .help("Password to log in with (overrides the URL's; or set THEMIS_PASSWORD)")))]
struct CreateArgs {
    #[command(flatten)]
    login: Login,
    /// The new user's name.
    name: String,
    #[command(flatten)]
    password: NewPassword,
    /// Make the user a superuser (may do anything on the server).
    #[arg(long)]
    superuser: bool,
    /// Grant a role: DB=ROLE with ROLE admin, readwrite or readonly; DB "*" = every
    /// database (repeat for more).
    #[arg(long = "role", value_name = "DB=ROLE", value_parser = parse_grant)]
    roles: Vec<(String, Role)>,
}

#[derive(Args, Debug)]
#[command(mut_arg("password", |a| a.long("login-password")
    .help("Password to log in with (overrides the URL's; or set THEMIS_PASSWORD)")))]
struct PasswdArgs {
    #[command(flatten)]
    login: Login,
    /// The user whose password to set.
    name: String,
    #[command(flatten)]
    password: NewPassword,
}

/// Parses `DB=ROLE` (`shop=readwrite`, `*=readonly`).
fn parse_grant(spec: &str) -> std::result::Result<(String, Role), String> {
    let Some((database, role)) = spec.split_once('=') else {
        return Err(format!(
            "{spec:?} is not DB=ROLE: write e.g. shop=readwrite or '*=readonly'"
        ));
    };
    let database = database.trim();
    if database.is_empty() {
        return Err(format!(
            "{spec:?} names no database: write e.g. shop=readwrite or '*=readonly'"
        ));
    }
    let role = role.parse::<Role>().map_err(|e| e.to_string())?;
    Ok((database.to_owned(), role))
}

pub fn run(args: UserArgs) -> Result<()> {
    match args.command {
        UserCommand::List { login, json } => block_on(async move {
            let users = login.connect().await?.list_users().await?;
            if json {
                print_json(&users)
            } else {
                print_users(&users)
            }
        }),
        UserCommand::Create(args) => {
            let password = args.password.read()?;
            let options = UserOptions {
                superuser: args.superuser,
                roles: args.roles,
            };
            block_on(async move {
                let client = args.login.connect().await?;
                let user = client.create_user(&args.name, &password, &options).await?;
                println!("created user {}", describe(&user));
                Ok(())
            })
        }
        UserCommand::Drop { login, name } => block_on(async move {
            login.connect().await?.drop_user(&name).await?;
            println!("dropped user {name}");
            Ok(())
        }),
        UserCommand::Passwd(args) => {
            let password = args.password.read()?;
            block_on(async move {
                let (addr, options) = args.login.options()?;
                let client = Client::connect_with(&addr, options.clone()).await?;
                if client.server_info().username == args.name {
                    // Your own password: the one you logged in with is the old one.
                    if options.auth != Auth::Password {
                        bail!("changing your own password needs the current one: log in with your password (not an API key) to change it");
                    }
                    client.change_password(&options.password, &password).await?;
                } else {
                    client.set_password(&args.name, &password).await?;
                }
                println!("changed the password of {}", args.name);
                Ok(())
            })
        }
        UserCommand::Grant {
            login,
            name,
            database,
            role,
        } => block_on(async move {
            let user = login
                .connect()
                .await?
                .grant_role(&name, &database, role)
                .await?;
            println!("granted {role} on {database}: {}", describe(&user));
            Ok(())
        }),
        UserCommand::Revoke {
            login,
            name,
            database,
        } => block_on(async move {
            let user = login.connect().await?.revoke_role(&name, &database).await?;
            println!("revoked the role on {database}: {}", describe(&user));
            Ok(())
        }),
        UserCommand::Superuser { login, name, on } => block_on(async move {
            let user = login.connect().await?.set_superuser(&name, on).await?;
            println!("{}", describe(&user));
            Ok(())
        }),
        UserCommand::EndSessions { login, name } => block_on(async move {
            let ended = login
                .connect()
                .await?
                .revoke_sessions(name.as_deref())
                .await?;
            println!("ended {ended} sessions");
            Ok(())
        }),
        UserCommand::Whoami { login, json } => block_on(async move {
            let me = login.connect().await?.whoami().await?;
            if json {
                return print_json(&me);
            }
            let mut out = String::new();
            out.push_str(&format!("user:        {}\n", me.username));
            out.push_str(&format!("method:      {}\n", me.method));
            out.push_str(&format!("database:    {}\n", me.database));
            out.push_str(&format!("superuser:   {}\n", yes_no(me.superuser)));
            out.push_str(&format!("roles:       {}\n", roles_text(&me.roles)));
            if let Some(at) = me.session_expires_at_ms {
                out.push_str(&format!("session end: {}\n", format_time(at)));
            }
            if let Some(id) = &me.api_key_id {
                out.push_str(&format!("API key:     {id}\n"));
            }
            write_stdout(&out)
        }),
    }
}

/// `alice (superuser; roles: shop=readwrite, *=readonly)`.
fn describe(user: &UserInfo) -> String {
    let mut text = format!("{} (", user.name);
    if user.superuser {
        text.push_str("superuser; ");
    }
    text.push_str(&format!("roles: {})", roles_text(&user.roles)));
    text
}

/// `shop=readwrite, *=readonly`, `-` for none.
fn roles_text(roles: &std::collections::BTreeMap<String, Role>) -> String {
    if roles.is_empty() {
        return "-".to_owned();
    }
    roles
        .iter()
        .map(|(db, role)| format!("{db}={role}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn print_users(users: &[UserInfo]) -> Result<()> {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                yes_no(u.superuser).to_owned(),
                roles_text(&u.roles),
            ]
        })
        .collect();
    let mut out = table(&["name", "superuser", "roles"], &rows);
    out.push_str(&format!(
        "{} user{}\n",
        users.len(),
        if users.len() == 1 { "" } else { "s" }
    ));
    write_stdout(&out)
}

/// An aligned table with a header row and a rule under it.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let mut out = line(header.to_vec());
    out.push_str(&line(rules.iter().map(String::as_str).collect()));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("encoding the answer as JSON")?;
    text.push('\n');
    write_stdout(&text)
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Unix milliseconds as `2025-11-21 04:40:00 UTC`.
pub fn format_time(unix_ms: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp((unix_ms / 1000) as i64)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{unix_ms} ms after the Unix epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: UserCommand,
    }

    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn grants() {
        assert_eq!(
            parse_grant("shop=readwrite").unwrap(),
            ("shop".into(), Role::Readwrite)
        );
        assert_eq!(
            parse_grant("*=readonly").unwrap(),
            ("*".into(), Role::Readonly)
        );
        assert!(parse_grant("shop").unwrap_err().contains("DB=ROLE"));
        assert!(parse_grant("=admin").unwrap_err().contains("no database"));
        assert!(parse_grant("shop=owner").unwrap_err().contains("readwrite"));
    }

    #[test]
    fn create_takes_the_new_password_and_login_flags() {
        let cli = Cli::try_parse_from([
            "user",
            "create",
            "alice",
            "--password",
            "pw",
            "--login-password",
            "rootpw",
            "--role",
            "shop=readwrite",
            "--role",
            "*=readonly",
            "--superuser",
            "--url",
            "themis://root@h:1",
        ])
        .unwrap();
        let UserCommand::Create(args) = cli.command else {
            panic!("not create")
        };
        assert_eq!(args.name, "alice");
        assert_eq!(args.password.read().unwrap(), "pw");
        assert!(args.superuser);
        assert_eq!(
            args.roles,
            vec![
                ("shop".into(), Role::Readwrite),
                ("*".into(), Role::Readonly)
            ]
        );
        let (addr, options) = args.login.options().unwrap();
        assert_eq!(addr, "h:1");
        assert_eq!(options.username, "root");
        assert_eq!(options.password, "rootpw");
        assert_eq!(options.auth, Auth::Password);

        assert!(Cli::try_parse_from([
            "user",
            "create",
            "a",
            "--password",
            "x",
            "--password-stdin"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["user", "grant", "a", "shop", "owner"]).is_err());
        let cli = Cli::try_parse_from(["user", "grant", "a", "*", "admin"]).unwrap();
        assert!(matches!(
            cli.command,
            UserCommand::Grant {
                role: Role::Admin,
                ..
            }
        ));
    }

    #[test]
    fn api_key_login() {
        let cli = Cli::try_parse_from([
            "user",
            "whoami",
            "--api-key",
            "themis_0123456789ab_secret",
            "--url",
            "themis://h:2/shop",
        ])
        .unwrap();
        let UserCommand::Whoami { login, .. } = cli.command else {
            panic!("not whoami")
        };
        let (_, options) = login.options().unwrap();
        assert_eq!(
            options.auth,
            Auth::ApiKey("themis_0123456789ab_secret".into())
        );
        assert_eq!(options.database.as_deref(), Some("shop"));
        let cli =
            Cli::try_parse_from(["user", "whoami", "--api-key", " ", "--url", "h:1"]).unwrap();
        let UserCommand::Whoami { login, .. } = cli.command else {
            panic!("not whoami")
        };
        assert!(login.options().unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn empty_passwords_are_refused() {
        assert!(check_password(String::new())
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert_eq!(check_password("x".into()).unwrap(), "x");
    }

    #[test]
    fn tables_and_times() {
        let t = table(
            &["name", "roles"],
            &[vec!["alice".into(), "shop=readwrite".into()]],
        );
        assert_eq!(
            t,
            "name   roles\n-----  --------------\nalice  shop=readwrite\n"
        );
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_763_700_000_000), "2025-11-21 04:40:00 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
