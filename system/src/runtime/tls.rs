//! HTTPS for the backend's web server: a rustls server configuration from a PEM certificate
//! chain and private key (`tls_cert`, `tls_key` in the backend config).
//!
//! Why these crates: rustls is the memory-safe TLS stack the Rust ecosystem has settled on;
//! its `ring` provider reuses the `ring` already linked for the sessions' AEAD and the
//! control plane's Ed25519 (its default, aws-lc-rs, would build a C library); axum-server's
//! rustls acceptor serves the same axum router over it. Only TLS 1.2 and 1.3 with rustls'
//! safe defaults; ALPN offers `http/1.1` only, because the live WebSocket is an HTTP/1.1
//! upgrade.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// A certificate or key that cannot serve.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("certificate and key do not make a TLS server: {0}")]
    Config(#[from] rustls::Error),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// The server configuration for `cert` (PEM, the chain leaf first) and `key` (PEM: PKCS#8,
/// PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e))?;
    if chain.is_empty() {
        return Err(file_err(cert, "holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let e = server_config(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("cert.pem"), "{e}");
        std::fs::write(&cert, "not pem").unwrap();
        let e = server_config(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("no PEM"), "{e}");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(server_config(&cert, &key).is_err());
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        server_config(&cert, &key).expect("a self-signed pair serves");
    }
}

#[cfg(test)]
mod https {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::runtime::backend::{Backend, BackendFile};

    /// One HTTP/1.1 request over `stream`; the whole response as text.
    async fn exchange(
        mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        request: &str,
    ) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn the_backend_serves_https_with_secure_cookies_and_refuses_plain_http() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        let pw = dir.path().join("admin.pw");
        std::fs::write(&pw, "a password for the tls test\n").unwrap();
        let cfg = BackendFile {
            http: ([127, 0, 0, 1], 0).into(),
            admin_password_file: Some(pw),
            insecure: true,
            tls_cert: Some(cert),
            tls_key: Some(key),
            ..BackendFile::new(format!("sqlite:{}", dir.path().join("b.db").display()))
        };
        let backend = Backend::bind(&cfg).await.unwrap();
        let addr = backend.http_addr().unwrap();
        assert_eq!(backend.url().unwrap(), format!("https://{addr}/"));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(backend.run(async {
            let _ = stop_rx.await;
        }));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(made.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let body = r#"{"name":"admin","password":"a password for the tls test"}"#;
        let login = format!(
            "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = connector.connect(name, tcp).await.expect("a TLS handshake");
        let res = exchange(tls, &login).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        let cookie = res
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .expect("a login cookie");
        assert!(
            cookie.contains("; Secure") && cookie.contains("HttpOnly"),
            "{cookie}"
        );

        // Plain HTTP on the HTTPS port gets no page.
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let res = exchange(
            tcp,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(!res.starts_with("HTTP/1.1 200"), "{res}");

        stop_tx.send(()).unwrap();
        served.await.unwrap().expect("a clean stop");
    }
}
