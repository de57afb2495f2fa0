//! TLS for a connection: rustls (aws-lc-rs) with the CA given in [`TlsOptions`] (or,
//! when none is given, the operating system's trusted roots, loaded with
//! `rustls-native-certs`, which honours `SSL_CERT_FILE` / `SSL_CERT_DIR`), and a
//! client certificate for mTLS when one is configured.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result};
use crate::options::TlsOptions;

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::Tls(format!(
            "cannot read the {what} {}: {e}; check TlsOptions",
            path.display()
        ))
    })
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{} is not a PEM {what}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{} holds no certificate (expected a PEM {what})",
            path.display()
        )));
    }
    Ok(certs)
}

/// The roots in the CA file `ca`.
fn configured_roots(ca: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca, "CA certificate")? {
        roots.add(cert).map_err(|e| {
            Error::Tls(format!(
                "{} cannot serve as a CA certificate: {e}",
                ca.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The operating system's trusted roots (or those in `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` when set). Unusable entries are skipped as long as one root loads.
fn system_roots() -> Result<rustls::RootCertStore> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _unusable) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = match loaded.errors.first() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        return Err(Error::Tls(format!(
            "no CA certificate is configured and none of the system's trusted root \
             certificates could be loaded{why}; set ssl_ca_cert_path in the URL (or \
             TlsOptions::ca_cert_path) to the CA that signed the server's certificate, or \
             point SSL_CERT_FILE / SSL_CERT_DIR at trusted roots"
        )));
    }
    Ok(roots)
}

/// The connector for `options`; built per connection attempt, so files replaced on
/// disk are picked up on the next reconnect.
fn connector(options: &TlsOptions) -> Result<TlsConnector> {
    let roots = match &options.ca_cert_path {
        Some(ca) => configured_roots(ca)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&options.client_cert_path, &options.client_key_path) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "client certificate")?;
            let key_pem = read(key, "client key")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                Error::Tls(format!("{} is not a PEM private key: {e}", key.display()))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::Tls(format!(
                    "the client certificate and key do not go together: {e}"
                ))
            })?
        }
        _ => {
            return Err(Error::Tls(
                "give both client_cert_path and client_key_path for mTLS, or neither".to_owned(),
            ))
        }
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Runs the TLS handshake over `tcp` with the server at `host`.
pub(crate) async fn connect(
    options: &TlsOptions,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>> {
    let connector = connector(options)?;
    let name = options.server_name.clone().unwrap_or_else(|| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    });
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| Error::Tls(format!("{name:?} is not a valid server name for TLS: {e}")))?;
    connector.connect(server_name, tcp).await.map_err(|e| {
        let trusted = match &options.ca_cert_path {
            Some(ca) => ca.display().to_string(),
            None => "the system's trusted roots (set ssl_ca_cert_path / \
                     TlsOptions::ca_cert_path to trust another CA)"
                .to_owned(),
        };
        Error::Tls(format!(
            "handshake with {host} failed: {e}; check that the server has TLS enabled, that \
             its certificate chains to {trusted} and names {name:?} (set ssl_server_name / \
             TlsOptions::server_name otherwise)"
        ))
    })
}
