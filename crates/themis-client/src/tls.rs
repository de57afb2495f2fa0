//! TLS for a connection: rustls (aws-lc-rs) with the CA given in [`TlsOptions`], and a
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

/// The connector for `options`; built per connection attempt, so files replaced on
/// disk are picked up on the next reconnect.
fn connector(options: &TlsOptions) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&options.ca_cert_path, "CA certificate")? {
        roots.add(cert).map_err(|e| {
            Error::Tls(format!(
                "{} cannot serve as a CA certificate: {e}",
                options.ca_cert_path.display()
            ))
        })?;
    }
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
        Error::Tls(format!(
            "handshake with {host} failed: {e}; check that the server has TLS enabled, that \
             its certificate chains to {} and names {name:?} (set TlsOptions::server_name \
             otherwise)",
            options.ca_cert_path.display()
        ))
    })
}
