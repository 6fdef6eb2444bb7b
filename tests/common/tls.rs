//! A throwaway PKI made with the `openssl` CLI: a CA, server certificates
//! for chosen names, client certificates. Files live in a temp dir removed
//! on drop. Used to put a real docker-registry behind TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

const OPENSSL_BIN: &str = "/usr/bin/openssl";

#[derive(Debug)]
pub struct Pki {
    dir: TempDir,
    name: String,
}

/// A certificate and its private key (PEM).
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    assert!(
        Path::new(OPENSSL_BIN).exists(),
        "{OPENSSL_BIN} not found: install Debian's openssl package"
    );
    let out = Command::new(OPENSSL_BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A new CA named `name` (its files are `<name>-ca.pem` / `-ca.key`).
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("crius-pki-")
            .tempdir()
            .expect("creating the PKI temp dir");
        let subj = format!("/CN={name} test CA");
        let (cert, key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Pki {
            dir,
            name: name.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join(format!("{}-ca.pem", self.name))
    }

    /// A server certificate for `sans` (openssl syntax, e.g.
    /// "IP:127.0.0.2,DNS:localhost"), signed by this CA.
    pub fn server(&self, file: &str, sans: &str) -> CertPair {
        self.leaf(
            file,
            &format!("subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"),
        )
    }

    /// A client certificate (CN = `file`), signed by this CA.
    pub fn client(&self, file: &str) -> CertPair {
        self.leaf(file, "extendedKeyUsage=clientAuth\n")
    }

    fn leaf(&self, file: &str, ext: &str) -> CertPair {
        let d = self.dir.path();
        let ext_file = format!("{file}.ext");
        std::fs::write(
            d.join(&ext_file),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
        )
        .expect("writing extensions");
        let (cert, key, csr) = (
            format!("{file}.pem"),
            format!("{file}.key"),
            format!("{file}.csr"),
        );
        let subj = format!("/CN={file}");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subj,
            ],
        );
        let ca = self.ca();
        let ca_key = d.join(format!("{}-ca.key", self.name));
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                ca.to_str().unwrap(),
                "-CAkey",
                ca_key.to_str().unwrap(),
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext_file,
            ],
        );
        CertPair {
            cert: d.join(cert),
            key: d.join(key),
        }
    }
}
