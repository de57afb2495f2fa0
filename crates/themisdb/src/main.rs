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

/// mimalloc instead of glibc's allocator: under the server's load (small, short-lived
/// allocations freed on other threads than the one that made them) glibc spent about
/// a sixth of the server's CPU in `_int_malloc`, `malloc_consolidate` and
/// `unlink_chunk` (docs/benchmarks.md, "The allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's `mi_option_set` (linked in with the allocator).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_arena_eager_commit`, the fifth of mimalloc's options in both its v2 and
/// v3 headers.
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// Memory that mimalloc purges is handed back to the system at once (decommitted)
/// instead of being marked reusable while still counted as resident: with its default
/// (eager commit on an overcommitting Linux) 10,000 idle connections cost 160 MB of
/// resident memory instead of 120 MB (bench/idle_memory.sh).
///
/// The option only affects arenas reserved after it is set, and mimalloc reserves its
/// first one at the process's first allocation, before `main`; so this runs as an ELF
/// constructor, before the Rust runtime starts.
extern "C" fn tune_allocator() {
    // SAFETY: `mi_option_set` only stores the value. It is not thread safe; this runs
    // from the loader's constructors, while the process has one thread.
    unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

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
