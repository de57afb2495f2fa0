//! The username a client certificate names, for mTLS login (`[security]
//! certificate_auth`).
//!
//! The TLS layer has already verified the certificate chain against the configured
//! client CA; this module only reads the name out of the leaf certificate, from the
//! field chosen by `[security] certificate_username`.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::config::CertificateUsername;

/// The username in the DER X.509 certificate `der`, read from `field`:
///
/// * [`CertificateUsername::Cn`]: the subject's common name. A subject with several
///   CNs is refused as ambiguous.
/// * [`CertificateUsername::SanEmail`] / [`SanDns`](CertificateUsername::SanDns) /
///   [`SanUri`](CertificateUsername::SanUri): the first subjectAltName of type
///   rfc822Name / dNSName / uniformResourceIdentifier, in certificate order.
///
/// Guarantees: `Ok` holds a non-empty name without control characters, taken verbatim
/// (no case folding or trimming). The certificate is parsed only, not verified: call
/// this on a certificate the TLS handshake has already checked. Errors say what the
/// certificate lacks and how to fix it.
pub fn username_from_certificate(der: &[u8], field: CertificateUsername) -> Result<String, String> {
    let cert = match X509Certificate::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => {
            return Err(format!(
                "the client certificate has {} bytes of trailing data after its DER encoding",
                rest.len()
            ))
        }
        Ok((_, cert)) => cert,
        Err(e) => {
            return Err(format!(
                "the client certificate is not valid DER X.509: {e}"
            ))
        }
    };
    let name = match field {
        CertificateUsername::Cn => common_name(&cert)?,
        CertificateUsername::SanEmail
        | CertificateUsername::SanDns
        | CertificateUsername::SanUri => first_san(&cert, field)?,
    };
    if name.is_empty() {
        return Err(format!(
            "the client certificate's {} is empty: issue it with a non-empty name",
            describe(field)
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the client certificate's {} contains control characters, which a username may not",
            describe(field)
        ));
    }
    Ok(name)
}

fn common_name(cert: &X509Certificate<'_>) -> Result<String, String> {
    let mut cns = cert.subject().iter_common_name();
    let Some(cn) = cns.next() else {
        return Err(
            "the client certificate has no subject common name (CN): issue it with one, \
                    or set [security] certificate_username to a subjectAltName type it has"
                .to_string(),
        );
    };
    if cns.next().is_some() {
        return Err(
            "the client certificate's subject has more than one common name (CN), so \
                    the username is ambiguous: issue it with exactly one, or set [security] \
                    certificate_username to a subjectAltName type"
                .to_string(),
        );
    }
    cn.as_str().map(str::to_string).map_err(|_| {
        "the client certificate's subject common name (CN) is not a UTF-8, printable or IA5 \
         string: issue it with a UTF8String CN"
            .to_string()
    })
}

fn first_san(cert: &X509Certificate<'_>, field: CertificateUsername) -> Result<String, String> {
    let missing = || {
        format!(
            "the client certificate has no {}: issue it with one, or set [security] \
             certificate_username to a name it has (cn, san_email, san_dns, san_uri)",
            describe(field)
        )
    };
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("the client certificate's subjectAltName extension is invalid: {e}"))?
        .ok_or_else(missing)?;
    // Context-specific tags of GeneralName (RFC 5280): rfc822Name [1], dNSName [2],
    // uniformResourceIdentifier [6].
    let wanted_tag = match field {
        CertificateUsername::SanEmail => 1,
        CertificateUsername::SanDns => 2,
        _ => 6,
    };
    for name in &san.value.general_names {
        match (field, name) {
            (CertificateUsername::SanEmail, GeneralName::RFC822Name(s))
            | (CertificateUsername::SanDns, GeneralName::DNSName(s))
            | (CertificateUsername::SanUri, GeneralName::URI(s)) => return Ok((*s).to_string()),
            (_, GeneralName::Invalid(tag, _)) if tag.0 == wanted_tag => {
                return Err(format!(
                    "the client certificate's first {} is not valid text",
                    describe(field)
                ))
            }
            _ => {}
        }
    }
    Err(missing())
}

/// How errors name `field`.
fn describe(field: CertificateUsername) -> &'static str {
    match field {
        CertificateUsername::Cn => "subject common name (CN)",
        CertificateUsername::SanEmail => "email subjectAltName (rfc822Name)",
        CertificateUsername::SanDns => "DNS subjectAltName (dNSName)",
        CertificateUsername::SanUri => "URI subjectAltName",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(cn: &[&str], sans: Vec<SanType>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Themis tests");
        for cn in cn {
            dn.push(DnType::CommonName, *cn);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn all_sans() -> Vec<SanType> {
        vec![
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
            SanType::DnsName("alice.example.com".try_into().unwrap()),
            SanType::Rfc822Name("alice@example.com".try_into().unwrap()),
            SanType::URI("spiffe://example.com/alice".try_into().unwrap()),
            SanType::DnsName("second.example.com".try_into().unwrap()),
            SanType::Rfc822Name("second@example.com".try_into().unwrap()),
            SanType::URI("spiffe://example.com/second".try_into().unwrap()),
        ]
    }

    #[test]
    fn cn_is_the_username() {
        let der = cert(&["alice"], all_sans());
        assert_eq!(
            username_from_certificate(&der, CertificateUsername::Cn).unwrap(),
            "alice"
        );
    }

    #[test]
    fn first_san_of_each_type_is_the_username() {
        let der = cert(&["alice"], all_sans());
        let get = |f| username_from_certificate(&der, f).unwrap();
        assert_eq!(get(CertificateUsername::SanEmail), "alice@example.com");
        assert_eq!(get(CertificateUsername::SanDns), "alice.example.com");
        assert_eq!(
            get(CertificateUsername::SanUri),
            "spiffe://example.com/alice"
        );
    }

    #[test]
    fn missing_common_name() {
        let der = cert(&[], all_sans());
        let err = username_from_certificate(&der, CertificateUsername::Cn).unwrap_err();
        assert!(err.contains("no subject common name (CN)"), "{err}");
        assert!(err.contains("certificate_username"), "{err}");
    }

    #[test]
    fn missing_san_types() {
        // No subjectAltName extension at all.
        let der = cert(&["alice"], vec![]);
        for (field, what) in [
            (CertificateUsername::SanEmail, "no email subjectAltName"),
            (CertificateUsername::SanDns, "no DNS subjectAltName"),
            (CertificateUsername::SanUri, "no URI subjectAltName"),
        ] {
            let err = username_from_certificate(&der, field).unwrap_err();
            assert!(err.contains(what), "{err}");
        }
        // An extension with other types only.
        let der = cert(
            &["alice"],
            vec![SanType::DnsName("alice.example.com".try_into().unwrap())],
        );
        let err = username_from_certificate(&der, CertificateUsername::SanEmail).unwrap_err();
        assert!(
            err.contains("no email subjectAltName (rfc822Name)"),
            "{err}"
        );
        let err = username_from_certificate(&der, CertificateUsername::SanUri).unwrap_err();
        assert!(err.contains("no URI subjectAltName"), "{err}");
        assert_eq!(
            username_from_certificate(&der, CertificateUsername::SanDns).unwrap(),
            "alice.example.com"
        );
    }

    #[test]
    fn empty_common_name_is_refused() {
        let der = cert(&[""], vec![]);
        let err = username_from_certificate(&der, CertificateUsername::Cn).unwrap_err();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn not_a_certificate() {
        let err = username_from_certificate(b"not DER", CertificateUsername::Cn).unwrap_err();
        assert!(err.contains("not valid DER X.509"), "{err}");
        let mut der = cert(&["alice"], vec![]);
        der.push(0);
        let err = username_from_certificate(&der, CertificateUsername::Cn).unwrap_err();
        assert!(err.contains("trailing data"), "{err}");
        let err =
            username_from_certificate(&der[..der.len() / 2], CertificateUsername::Cn).unwrap_err();
        assert!(err.contains("not valid DER X.509"), "{err}");
    }
}
