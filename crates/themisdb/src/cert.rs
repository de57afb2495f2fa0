//! `themisdb cert`: a development certificate authority and the certificates TLS and
//! mTLS need, with proper subjectAltNames (what certificates made with a bare `openssl
//! req -subj /CN=…` lack, and what clients check the host name against).
//!
//! * `themisdb cert ca --out DIR` → `DIR/ca.pem`, `DIR/ca-key.pem`
//! * `themisdb cert server --out DIR --san localhost --san 127.0.0.1` → `DIR/server.pem`,
//!   `DIR/server-key.pem`, signed by `DIR/ca.pem` (or `--ca`/`--ca-key`)
//! * `themisdb cert client --out DIR --name alice` → `DIR/client-alice.pem`,
//!   `DIR/client-alice-key.pem`; the CN (and a DNS SAN) is the user name mTLS maps to
//!
//! Keys are ECDSA P-256, written with mode 0600. For development and tests: a
//! production deployment uses its organisation's CA.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Args, Debug)]
pub struct CertArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// A new certificate authority: ca.pem and ca-key.pem.
    Ca {
        /// Directory to write into (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "ThemisDB development CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// A server certificate signed by the CA: server.pem and server-key.pem.
    Server {
        #[command(flatten)]
        signer: Signer,
        /// Host names and IP addresses clients connect to (repeatable).
        #[arg(long = "san", default_values = ["localhost", "127.0.0.1"])]
        sans: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// A client certificate for mTLS: client-NAME.pem and client-NAME-key.pem.
    Client {
        #[command(flatten)]
        signer: Signer,
        /// The user name the certificate authenticates as (its CN and a DNS SAN).
        #[arg(long)]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

#[derive(Args, Debug)]
struct Signer {
    /// Directory to write into; also where ca.pem and ca-key.pem are looked for.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// The CA certificate (default OUT/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The CA's private key (default OUT/ca-key.pem).
    #[arg(long)]
    ca_key: Option<PathBuf>,
}

pub fn run(args: CertArgs) -> Result<()> {
    match args.what {
        What::Ca { out, name, days } => {
            let key = KeyPair::generate().context("cannot generate a key")?;
            let mut params = CertificateParams::default();
            params.distinguished_name = common_name(&name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params, days);
            let cert = params.self_signed(&key).context("cannot sign the CA")?;
            write_pair(&out, "ca", &cert.pem(), &key)
        }
        What::Server { signer, sans, days } => {
            if sans.is_empty() {
                bail!("give at least one --san: the host name or IP clients connect to");
            }
            let mut params = CertificateParams::default();
            params.distinguished_name = common_name(&sans[0]);
            params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_>>()?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            validity(&mut params, days);
            sign(&signer, params, "server")
        }
        What::Client { signer, name, days } => {
            if name.is_empty() {
                bail!("--name must be the user name the certificate logs in as");
            }
            let mut params = CertificateParams::default();
            params.distinguished_name = common_name(&name);
            params.subject_alt_names = vec![san(&name)?];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            validity(&mut params, days);
            sign(&signer, params, &format!("client-{name}"))
        }
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn san(s: &str) -> Result<SanType> {
    Ok(match s.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            s.to_string()
                .try_into()
                .with_context(|| format!("'{s}' is neither an IP address nor a DNS name"))?,
        ),
    })
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
    // A little slack for clocks that are behind.
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
}

fn sign(signer: &Signer, mut params: CertificateParams, stem: &str) -> Result<()> {
    let ca_path = signer
        .ca
        .clone()
        .unwrap_or_else(|| signer.out.join("ca.pem"));
    let ca_key_path = signer
        .ca_key
        .clone()
        .unwrap_or_else(|| signer.out.join("ca-key.pem"));
    let ca_pem = read(&ca_path, "the CA certificate")?;
    let ca_key = KeyPair::from_pem(&read(&ca_key_path, "the CA key")?).with_context(|| {
        format!(
            "{} is not a PEM private key; give the CA's key with --ca-key",
            ca_key_path.display()
        )
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).with_context(|| {
        format!(
            "{} is not a PEM CA certificate; make one with `themisdb cert ca`",
            ca_path.display()
        )
    })?;
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().context("cannot generate a key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;
    write_pair(&signer.out, stem, &cert.pem(), &key)
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {what} {}: make it with `themisdb cert ca --out DIR` or point to it \
             with --ca/--ca-key",
            path.display()
        )
    })
}

fn write_pair(dir: &Path, stem: &str, cert_pem: &str, key: &KeyPair) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    std::fs::write(&cert_path, cert_pem)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, &key.serialize_pem())?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    Ok(())
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
