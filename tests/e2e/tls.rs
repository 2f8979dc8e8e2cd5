//! A throwaway certificate authority and a server certificate for 127.0.0.1 / localhost, made with
//! the openssl CLI, laid out the way the clients want to be told about a private CA.

use super::cmd;
use std::path::{Path, PathBuf};

pub struct Certs {
    pub ca_crt: PathBuf,
    /// A directory holding only `ca.crt`: what `--cert-dir` of skopeo/podman/buildah expects.
    pub cert_dir: PathBuf,
    pub server_crt: PathBuf,
    /// Server certificate followed by the CA, as nginx and rustls serve it.
    pub server_chain: PathBuf,
    pub server_key: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = dir.join("ca.key");
        let ca_crt = dir.join("ca.crt");
        let server_key = dir.join("server.key");
        let csr = dir.join("server.csr");
        let server_crt = dir.join("server.crt");
        let ext = dir.join("server.ext");
        cmd::run(
            cmd::tool("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=berth test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&ca_crt),
        );
        cmd::run(
            cmd::tool("openssl")
                .args([
                    "req",
                    "-new",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                ])
                .arg("-keyout")
                .arg(&server_key)
                .arg("-out")
                .arg(&csr),
        );
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        cmd::run(
            cmd::tool("openssl")
                .args(["x509", "-req", "-days", "2", "-sha256", "-CAcreateserial"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&ca_crt)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&server_crt),
        );
        let server_chain = dir.join("server-chain.crt");
        let mut chain = std::fs::read(&server_crt).unwrap();
        chain.extend(std::fs::read(&ca_crt).unwrap());
        std::fs::write(&server_chain, chain).unwrap();
        let cert_dir = dir.join("trust");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::copy(&ca_crt, cert_dir.join("ca.crt")).unwrap();
        Certs {
            ca_crt,
            cert_dir,
            server_crt,
            server_chain,
            server_key,
        }
    }
}

impl Certs {
    /// The files `berth cert --data DATA` writes, with a `--cert-dir` directory at `trust`
    /// holding only the CA certificate (containers' clients read every `*.crt` in it as a CA,
    /// and refuse a `*.key` without its `*.cert`).
    pub fn of_berth(data: &Path, trust: &Path) -> Certs {
        let tls = data.join("tls");
        std::fs::create_dir_all(trust).unwrap();
        std::fs::copy(tls.join("ca.crt"), trust.join("ca.crt")).unwrap();
        Certs {
            ca_crt: tls.join("ca.crt"),
            cert_dir: trust.to_path_buf(),
            server_crt: tls.join("server.crt"),
            server_chain: tls.join("server.crt"),
            server_key: tls.join("server.key"),
        }
    }
}
