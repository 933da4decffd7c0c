//! A minimal HTTP/1.1 client for notifications: one connection per request
//! (notifications are rare; a pool would only hold sockets open), plain http
//! or https verified against a CA bundle, every step under one timeout.
//! Built on the hyper and tokio-rustls that tonic already brings in.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::http::{Method, Request, Uri, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Response bodies beyond this are cut off: receivers answer briefly.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Where Debian keeps the system's trusted CAs (used for https without `ca_file`).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {0:?}: {1}")]
    Url(String, String),
    #[error("connect to {0}: {1}")]
    Connect(String, String),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A parsed http(s) URL.
#[derive(Clone, Debug)]
pub struct Target {
    pub https: bool,
    /// Host without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `host:port` as written, for the Host header.
    pub authority: String,
    pub path_and_query: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |why: &str| HttpError::Url(url.to_owned(), why.to_owned());
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            https,
            host,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// This URL with `suffix` appended to its path (`/api/v2/alerts`).
    pub fn join(&self, suffix: &str) -> Self {
        let mut joined = self.clone();
        let base = self.path_and_query.trim_end_matches('/');
        joined.path_and_query = format!("{base}{suffix}");
        joined
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct HttpClient {
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
}

impl HttpClient {
    /// A client for `target`; https loads `ca_file` (or the system bundle).
    pub fn new(target: &Target, ca_file: Option<&Path>, timeout: Duration) -> anyhow::Result<Self> {
        use anyhow::Context;
        let tls = if target.https {
            let path = ca_file.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("read CA bundle {}", path.display()))?;
            for cert in certs {
                let cert = cert.with_context(|| format!("parse {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a CA certificate in {}", path.display()))?;
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "{} holds no CA certificate",
                path.display()
            );
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self { tls, timeout })
    }

    /// Sends one request and reads the whole answer, all within the timeout.
    pub async fn request(
        &self,
        method: Method,
        target: &Target,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        tokio::time::timeout(
            self.timeout,
            self.request_inner(method, target, headers, body),
        )
        .await
        .map_err(|_| HttpError::Timeout(self.timeout))?
    }

    async fn request_inner(
        &self,
        method: Method,
        target: &Target,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| HttpError::Connect(target.authority.clone(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut builder = Request::builder()
            .method(method)
            .uri(target.path_and_query.as_str())
            .header(header::HOST, target.authority.as_str())
            .header(
                header::USER_AGENT,
                concat!("vakt-collector/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::CONNECTION, "close");
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::Http(e.to_string()))?;
        match &self.tls {
            None => exchange(tcp, request).await,
            Some(connector) => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| HttpError::Tls(target.authority.clone(), e.to_string()))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| HttpError::Tls(target.authority.clone(), e.to_string()))?;
                exchange(tls, request).await
            }
        }
    }
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| HttpError::Http(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    // The connection task ends with the request (Connection: close) or when
    // the caller's timeout drops everything.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            // A receiver that answered 2xx has taken the notification even if
            // its body was cut or too long; keep the status.
            .unwrap_or_default();
        Ok(Response { status, body })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::parse("http://127.0.0.1:9093").unwrap();
        assert!(!t.https);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 9093));
        assert_eq!(t.join("/api/v2/alerts").path_and_query, "/api/v2/alerts");
        let t = Target::parse("https://[::1]/am/?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
        assert_eq!(t.authority, "[::1]");
        let t = Target::parse("https://am.example/prefix/").unwrap();
        assert_eq!(
            t.join("/api/v2/alerts").path_and_query,
            "/prefix/api/v2/alerts"
        );
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("http://user:pw@x/").is_err());
        assert!(Target::parse("/relative").is_err());
    }
}
