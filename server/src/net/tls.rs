//! TLS and QUIC configuration of the endpoint: TLS 1.3 only, ALPN `tessera/1`, the ring
//! crypto provider, and transport limits a client cannot negotiate around.
//!
//! Development nodes use a self-signed certificate generated once into the data dir
//! (`dev-cert.der`, `dev-key.der`); clients pin it. Production nodes load configured PEM
//! files (`[tls] cert_file`, `key_file`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tessera_shared::protocol::ALPN;
use tessera_shared::protocol::limits::DATAGRAM_BYTES_MAX;

/// Datagrams a connection may have queued for the application before older ones are
/// dropped: 64 full datagrams (75 KiB worst case per connection).
pub const DATAGRAM_RECEIVE_BUFFER_BYTES: usize = 64 * DATAGRAM_BYTES_MAX;
/// Outgoing datagram buffer per connection: 4 states. A lagging connection loses the
/// oldest, which the newer ones make up for (each is a delta against the client's ack);
/// more would only be stale states held per connection.
pub const DATAGRAM_SEND_BUFFER_BYTES: usize = 4 * DATAGRAM_BYTES_MAX;
/// A connection silent for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Flow-control window of a stream: a control frame and change.
pub const STREAM_WINDOW_BYTES: u32 = 64 * 1024;

/// A certificate chain and its key.
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

/// The dev certificate (DER) in the data dir: what clients pin.
pub const DEV_CERT_FILE: &str = "dev-cert.der";
/// The dev certificate's private key (PKCS#8 DER) in the data dir.
pub const DEV_KEY_FILE: &str = "dev-key.der";

/// Paths of the dev certificate and key in `data_dir`.
pub fn dev_cert_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join(DEV_CERT_FILE), data_dir.join(DEV_KEY_FILE))
}

/// The dev identity in `data_dir`, generated (for `localhost` and `127.0.0.1`) if absent.
pub fn dev_identity(data_dir: &Path) -> anyhow::Result<Identity> {
    let (cert_path, key_path) = dev_cert_paths(data_dir);
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        let generated = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .context("generating the dev certificate")?;
        std::fs::write(&cert_path, generated.cert.der())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        std::fs::write(&key_path, generated.signing_key.serialize_der())
            .with_context(|| format!("writing {}", key_path.display()))?;
        tracing::warn!(
            cert = %cert_path.display(),
            "generated a self-signed DEV certificate; clients must pin it. Not for production."
        );
    }
    let cert =
        std::fs::read(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key =
        std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    Ok(Identity {
        chain: vec![CertificateDer::from(cert)],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    })
}

/// The identity in PEM files: the chain (leaf first) and its private key.
pub fn identity_from_pem_files(cert_file: &Path, key_file: &Path) -> anyhow::Result<Identity> {
    use rustls::pki_types::pem::PemObject;
    let chain = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading the certificate chain {}", cert_file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the certificate chain {}", cert_file.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the private key {}", key_file.display()))?;
    Ok(Identity { chain, key })
}

/// The transport limits shared by server and client.
pub fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(STREAM_WINDOW_BYTES.into())
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER_BYTES))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER_BYTES)
        .max_idle_timeout(Some(
            IDLE_TIMEOUT
                .try_into()
                .expect("10 s is a valid idle timeout"),
        ))
        .keep_alive_interval(Some(IDLE_TIMEOUT / 3))
        // A connection sends about one datagram per tick: segmentation offload batches
        // nothing for it, while its transmit buffer is reserved for a whole GSO batch
        // (about 15 KiB per connection, measured with heaptrack) instead of one datagram.
        .enable_segmentation_offload(false);
    transport
}

/// The QUIC server configuration for `identity`.
pub fn server_config(identity: Identity) -> anyhow::Result<quinn::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with the ring provider")?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .context("the certificate and key do not match or are malformed")?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // 0-RTT data could be replayed: not accepted.
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).context("a QUIC-capable TLS config")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}
