//! `themisdb serve`: configuration, logging, signals, and the server's life.
//!
//! Precedence: built-in defaults < `themis.conf` < `THEMIS_<SECTION>_<KEY>` environment
//! variables < command-line flags. SIGINT or SIGTERM starts a graceful shutdown
//! (GOAWAY, in-flight requests finish, storage flushed) and the process exits 0.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use themis_server::config::{Config, LogFormat};
use themis_server::tls::TlsError;
use themis_server::{Server, StartOptions};
use tracing::{info, warn};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Config file (default: ./themis.conf if it exists).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (default: ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default: 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Port for the wire protocol (default: 8766).
    #[arg(long, short = 'p', value_name = "N")]
    port: Option<String>,
}

fn load_config(args: &ServeArgs) -> Result<(Config, Vec<String>)> {
    let (mut config, mut warnings) = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = &args.data_dir {
        config.apply_override("server", "data_dir", &dir.to_string_lossy(), "--data-dir")?;
    }
    if let Some(bind) = &args.bind {
        config.apply_override("wire_protocol", "bind_address", bind, "--bind")?;
    }
    if let Some(port) = &args.port {
        config.apply_override("wire_protocol", "port", port, "--port")?;
    }
    // Flags may have changed values that must agree with others.
    for w in config.validate()? {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    Ok((config, warnings))
}

fn init_logging(config: &Config) {
    // The storage engine's own info lines (journal rotation, flushes) are noise for an
    // operator; they show only when the filter names the engine's crates.
    let mut directives = config.server.log_level.clone();
    if !directives.contains("fjall") && !directives.contains("lsm_tree") {
        directives.push_str(",fjall=warn,lsm_tree=warn");
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&directives))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into files or collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match config.server.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let (config, warnings) = load_config(&args)?;
    init_logging(&config);
    for w in &warnings {
        warn!("{w}");
    }
    std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            config.server.data_dir.display()
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let opts = StartOptions {
            root_password: std::env::var("THEMIS_ROOT_PASSWORD").ok(),
        };
        // Handlers first: a SIGHUP right after the "listening" line must not kill us.
        let signals = Signals::install()?;
        let handle = Server::start(config, opts).await?;
        // Tests and scripts wait for this line to know the port is open.
        println!("themisdb listening on {}", handle.local_addr());
        signals.wait(&handle).await;
        info!("signal received: shutting down gracefully");
        handle
            .shutdown()
            .await
            .context("flushing storage at shutdown")?;
        info!("shutdown complete");
        Ok(())
    })
}

/// The signals `serve` handles: SIGTERM and SIGINT stop it, SIGHUP reloads TLS.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        })
    }

    /// Waits for SIGTERM or SIGINT. SIGHUP meanwhile reloads the TLS certificates
    /// (see `ServerHandle::reload_tls`) and reopens the audit log file (for log
    /// rotation), and the server keeps running.
    async fn wait(mut self, handle: &themis_server::ServerHandle) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    info!("SIGHUP received: reloading TLS certificates");
                    // A failed reload logs the file and the problem itself.
                    if let Err(TlsError::NotEnabled) = handle.reload_tls() {
                        info!("TLS is not enabled; nothing to reload");
                    }
                    if let Err(e) = handle.reopen_audit_log() {
                        warn!(error = %e, "reopening the audit log failed; it keeps writing to the old file");
                    }
                }
            }
        }
    }
}
