//! TLS for the gateway's outbound connections: RabbitMQ over `amqps://` and enrich look-ups
//! over `https://`. Both use rustls with the ring provider and trust the system's roots (read by
//! rustls-native-certs: the distribution's bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR`); a CA
//! file given at start is trusted *in addition* to them (an internal CA).
//!
//! This module reads and checks the files, at start, so that a bad file stops `serve` with the
//! file's name and why, before anything connects: [`Certificates::read`] (a CA file) and
//! [`ClientIdentity::read`] (a client certificate with its key). `bus::amqp` hands them to
//! lapin; the registry's look-ups take [`lookup_config`]. It opens no connection itself.
//!
//! The look-ups' trust is process-wide: `serve` sets it once with [`trust_for_lookups`] before
//! the registry is loaded, and every look-up client built afterwards (at load, at each
//! registration or reload) takes it. A look-up client built before (a `check`, a test in
//! process) trusts the system's roots only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {cause}", path.display())]
    Unreadable { path: PathBuf, cause: String },
    #[error("{} holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not usable: {cause}", path.display())]
    Invalid { path: PathBuf, cause: String },
    #[error("the look-ups' CA was already set")]
    AlreadySet,
}

/// PEM certificates read from a file, each checked to be a certificate rustls can use.
#[derive(Clone)]
pub struct Certificates {
    path: PathBuf,
    pem: String,
    der: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("path", &self.path)
            .field("certificates", &self.der.len())
            .finish()
    }
}

impl Certificates {
    /// Reads the PEM file at `path`: at least one certificate, every one a valid trust anchor.
    pub fn read(path: &Path) -> Result<Self, TlsError> {
        let pem = read_text(path)?;
        let der = certificates_in(path, &pem)?;
        let mut store = rustls::RootCertStore::empty();
        for (n, certificate) in der.iter().enumerate() {
            store
                .add(certificate.clone())
                .map_err(|error| TlsError::Invalid {
                    path: path.to_path_buf(),
                    cause: format!("certificate {} of {}: {error}", n + 1, der.len()),
                })?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            pem,
            der,
        })
    }

    /// The file the certificates came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The certificates as PEM text (as read).
    pub fn pem(&self) -> &str {
        &self.pem
    }
}

/// A client certificate (with its chain) and its private key, for servers that ask for one
/// (RabbitMQ with `ssl_options.fail_if_no_peer_cert = true`). The key never shows in `Debug`.
#[derive(Clone)]
pub struct ClientIdentity {
    certificate: PathBuf,
    certificate_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificate", &self.certificate)
            .field("key", &"<hidden>")
            .finish()
    }
}

impl ClientIdentity {
    /// Reads the certificate chain at `certificate` and the private key at `key` (PKCS#8,
    /// PKCS#1 or SEC1 PEM), and checks that the key is the certificate's.
    pub fn read(certificate: &Path, key: &Path) -> Result<Self, TlsError> {
        let certificate_pem = read_text(certificate)?;
        let chain = certificates_in(certificate, &certificate_pem)?;
        let key_pem = read_text(key)?;
        let invalid_key = |cause: String| TlsError::Invalid {
            path: key.to_path_buf(),
            cause,
        };
        let private_key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|error| {
            invalid_key(format!(
                "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {error}"
            ))
        })?;
        let signing_key = provider()
            .key_provider
            .load_private_key(private_key)
            .map_err(|error| invalid_key(error.to_string()))?;
        rustls::sign::CertifiedKey::new(chain, signing_key)
            .keys_match()
            .map_err(|error| {
                invalid_key(format!(
                    "it is not the key of the certificate in {}: {error}",
                    certificate.display()
                ))
            })?;
        Ok(Self {
            certificate: certificate.to_path_buf(),
            certificate_pem,
            key_pem,
        })
    }

    /// The certificate chain as PEM text.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The private key as PEM text.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// Trusts the certificates of `ca` for every look-up client built from now on, in addition to
/// the system's roots. Set once, before the registry is loaded.
pub fn trust_for_lookups(ca: Certificates) -> Result<(), TlsError> {
    LOOKUP_CA.set(ca).map_err(|_| TlsError::AlreadySet)
}

/// The rustls configuration of the look-up clients: ring, the system's roots and the CA set by
/// [`trust_for_lookups`], no client certificate. Built once (the system's roots read once).
pub fn lookup_config() -> rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = system_roots();
            if let Some(ca) = LOOKUP_CA.get() {
                for certificate in &ca.der {
                    // Each was added to a store once already, when the file was read.
                    let _ = roots.add(certificate.clone());
                }
            }
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports rustls' default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth()
        })
        .clone()
}

/// The CA file of the look-ups, when one was given.
static LOOKUP_CA: OnceLock<Certificates> = OnceLock::new();

/// The crypto provider of every TLS connection the gateway makes.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trust anchors; those that cannot be read are named in a warning.
fn system_roots() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "A system certificate could not be read; it is not trusted.");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!(
            added,
            ignored,
            "Some system certificates are not valid trust anchors; they are not trusted."
        );
    }
    roots
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|error| TlsError::Unreadable {
        path: path.to_path_buf(),
        cause: error.to_string(),
    })
}

/// Every `CERTIFICATE` block of `pem`, at least one.
fn certificates_in(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Invalid {
            path: path.to_path_buf(),
            cause: format!("bad PEM: {error}"),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}
