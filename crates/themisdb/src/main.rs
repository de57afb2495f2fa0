//! `themisdb`: the ThemisDB binary.
//!
//! * `themisdb serve`: run the server (wire protocol v1 on port 8766) on embedded
//!   storage.
//! * `themisdb bench`: load generator against a running server.
//! * `themisdb query`: run one AQL query, print its results as JSON (for scripts).
//! * `themisdb shell`: an interactive AQL shell.
//! * `themisdb cert`: a development CA and server/client certificates for TLS.
//! * `themisdb user`: users and their roles; `themisdb apikey`: API keys.

mod apikey;
mod bench;
mod cert;
mod query;
mod serve;
mod shell;
mod user;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "themisdb",
    version,
    about = "ThemisDB: a document database with a fast binary wire protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Measure a running server: ops/s and latency percentiles.
    Bench(bench::BenchArgs),
    /// Run one AQL query and print its results, one JSON document per line.
    Query(query::QueryArgs),
    /// Interactive AQL shell (reads statements from stdin when it is not a terminal).
    Shell(shell::ShellArgs),
    /// Make a development CA and server or client certificates (with proper SANs).
    Cert(cert::CertArgs),
    /// Users and roles: list, create, drop, passwd, grant, revoke, whoami.
    User(user::UserArgs),
    /// API keys: create, list, revoke.
    Apikey(apikey::ApiKeyArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Query(args) => query::run(args),
        Command::Shell(args) => shell::run(args),
        Command::Cert(args) => cert::run(args),
        Command::User(args) => user::run(args),
        Command::Apikey(args) => apikey::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
