//! TLS for registry endpoints: the rustls client config of one endpoint
//! (system roots plus configured CA files, a client certificate, or no
//! verification at all), and handshake failures put into words.
//!
//! Owns reading the PEM files an endpoint names; it does not decide which
//! endpoint uses which files (hosts.rs does).

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme};
use tracing::warn;

use super::RegistryError;

/// What an endpoint's TLS depends on. Also the key of the client cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct TlsSettings {
    /// PEM bundles trusted besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// PEM certificate chain and key presented when the server asks.
    pub client: Option<(PathBuf, PathBuf)>,
    pub skip_verify: bool,
}

/// The rustls config for an endpoint of `registry`. File problems name the
/// file and the registry.
pub(super) fn client_config(
    s: &TlsSettings,
    registry: &str,
) -> Result<rustls::ClientConfig, RegistryError> {
    let fail = |cause: String| RegistryError::Client {
        cause: format!("TLS settings of registry {registry}: {cause}"),
    };
    // The ring provider passed explicitly, so no process-wide default
    // provider has to be installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if s.skip_verify {
        Arc::new(NoVerify(provider.signature_verification_algorithms))
    } else {
        let mut extra = Vec::new();
        for f in &s.ca_files {
            extra.extend(read_certs(f).map_err(fail)?);
        }
        match rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra.clone(),
            provider.clone(),
        ) {
            Ok(v) => Arc::new(v),
            Err(e) => {
                // Still start: configured CAs and plain-HTTP registries work;
                // others fail with an unknown-issuer error.
                warn!(error = %e, "no system CA certificates: only configured CAs are trusted; install ca-certificates");
                let mut roots = rustls::RootCertStore::empty();
                for c in extra {
                    roots
                        .add(c)
                        .map_err(|e| fail(format!("a CA certificate is unusable: {e}")))?;
                }
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| fail(e.to_string()))?
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match &s.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = read_certs(cert).map_err(fail)?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| fail(format!("client key {}: {e}", key.display())))?;
            builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                fail(format!(
                    "client certificate {} with key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
    };
    // reqwest is built without http2.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("certificate file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// containerd's `skip_verify`: any certificate is accepted, but handshake
/// signatures are still checked so the session keys are the server's.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The rustls error somewhere in `e`'s causes, in words an operator can act
/// on, or None when the failure was not TLS.
pub(super) fn describe(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(words(r));
        }
        // io::Error::source skips the error it wraps; get_ref reaches it
        // (hyper and tokio-rustls wrap rustls errors that way).
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    None
}

fn words(e: &rustls::Error) -> String {
    const CA_HINT: &str = "add its CA to ca_files (or `ca` in hosts.toml)";
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let what = match c {
                CertificateError::UnknownIssuer => {
                    format!("the registry's certificate is signed by an unknown certificate authority; {CA_HINT}")
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("the registry's certificate has expired ({c:?})")
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!("the registry's certificate is not valid yet ({c:?})")
                }
                CertificateError::NotValidForName => {
                    "the registry's certificate is not valid for this host name".to_owned()
                }
                CertificateError::NotValidForNameContext { expected, presented } => format!(
                    "the registry's certificate is not valid for host name {} (it names {})",
                    expected.to_str(),
                    presented.join(", ")
                ),
                CertificateError::Revoked => "the registry's certificate is revoked".to_owned(),
                CertificateError::BadSignature => {
                    "the registry's certificate has a bad signature".to_owned()
                }
                other => format!("the registry's certificate was rejected: {other:?}"),
            };
            format!("TLS: {what}")
        }
        rustls::Error::AlertReceived(a) => match a {
            AlertDescription::CertificateRequired => {
                "TLS: the registry requires a client certificate; configure client_cert/client_key (or `client` in hosts.toml)".to_owned()
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired => format!(
                "TLS: the registry refused the client certificate step (alert {a:?}): it requires a client certificate (configure client_cert/client_key, or `client` in hosts.toml) or does not accept the one sent"
            ),
            AlertDescription::HandshakeFailure => {
                "TLS: the registry refused the handshake (no common protocol or cipher, or it wants a client certificate)".to_owned()
            }
            other => format!("TLS: the registry sent alert {other:?}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "TLS: the registry did not speak TLS as expected ({e}); is it plain HTTP? then use an http:// server or plain_http"
        ),
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_problems_are_worded() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(words(&unknown).contains("unknown certificate authority"));
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(words(&expired).contains("expired"));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(words(&name).contains("host name"));
        let req = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert!(words(&req).contains("client certificate"));
    }

    #[test]
    fn rustls_errors_are_found_inside_io_errors() {
        let io = std::io::Error::other(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let wrapped = std::io::Error::other(io);
        assert!(
            describe(&wrapped)
                .unwrap()
                .contains("unknown certificate authority")
        );
        assert!(describe(&std::io::Error::other("refused")).is_none());
    }

    #[test]
    fn missing_files_name_the_file_and_registry() {
        let s = TlsSettings {
            ca_files: vec![PathBuf::from("/nonexistent/ca.pem")],
            ..TlsSettings::default()
        };
        let e = client_config(&s, "reg.example:5000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/ca.pem") && e.contains("reg.example:5000"),
            "{e}"
        );
    }
}
