//! The Rust client library (feature `client`): connect to a node over QUIC with a pinned
//! certificate, log in with a token, send inputs (with redundancy for loss), and receive
//! delta-encoded states rebuilt into [`Snapshot`]s.
//!
//! What it is not yet: reconnection with backoff, resume and redirect following (the
//! session rules of PROTOCOL.md section 6, items 6 and 7) arrive with the session layer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::CertificateDer;

use crate::ids::NetId;
use crate::math::Vec2;
use crate::protocol::codec::{self, DecodeError};
use crate::protocol::delta::{DeltaDecoder, Snapshot};
use crate::protocol::io::{FrameError, read_frame, write_frame};
use crate::protocol::limits::{INPUT_FRAMES_MAX, STATE_STREAM_BYTES_MAX};
use crate::protocol::messages::*;
use crate::protocol::quantize::quantize_move;
use crate::protocol::{ALPN, PROTOCOL_VERSION};

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The node's QUIC address.
    pub server: SocketAddr,
    /// The name its certificate is for (`localhost` for dev certificates).
    pub server_name: String,
    /// The node's certificate (DER), pinned: no other is accepted.
    pub pinned_cert: Vec<u8>,
    /// The login token (a JWT).
    pub token: String,
    /// How long connecting and logging in may take.
    pub login_timeout: Duration,
}

/// Why the client could not connect or continue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Local setup failed (certificate, socket).
    #[error("client setup: {0}")]
    Setup(String),
    /// The QUIC connection failed or was closed.
    #[error("connection: {0}")]
    Connection(String),
    /// The server refused the login or a request.
    #[error("refused: {:?}: {}", .0.code, .0.message)]
    Refused(ErrorS2c),
    /// The server ended the session.
    #[error("kicked: {:?}: {}", .0.reason, .0.message)]
    Kicked(KickedS2c),
    /// The server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Connecting or logging in took longer than the configured timeout.
    #[error("timed out")]
    Timeout,
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Closed(m) => ClientError::Connection(m),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

impl From<DecodeError> for ClientError {
    fn from(e: DecodeError) -> Self {
        ClientError::Protocol(e.to_string())
    }
}

/// A logged-in session.
pub struct Client {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    welcome: WelcomeS2c,
    decoder: DeltaDecoder,
    seq: u32,
    /// The newest inputs, newest first, repeated in each datagram.
    recent: VecDeque<InputFrame>,
}

impl Client {
    /// Connects and logs in.
    pub async fn connect(config: &ClientConfig) -> Result<Client, ClientError> {
        tokio::time::timeout(config.login_timeout, Self::connect_inner(config))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn connect_inner(config: &ClientConfig) -> Result<Client, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(config.pinned_cert.clone()))
            .map_err(|e| ClientError::Setup(format!("pinned certificate: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| ClientError::Setup(e.to_string()))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(3)));
        client_config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if config.server.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ClientError::Setup(e.to_string()))?;
        endpoint.set_default_client_config(client_config);
        let connection = endpoint
            .connect(config.server, &config.server_name)
            .map_err(|e| ClientError::Connection(e.to_string()))?
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let hello = ControlC2s::Hello(HelloC2s {
            protocol_version: PROTOCOL_VERSION,
            token: config.token.clone(),
            ticket: None,
        });
        write_frame(&mut send, &hello).await?;
        let welcome = match read_frame::<ControlS2c>(&mut recv).await? {
            ControlS2c::Welcome(w) => w,
            ControlS2c::Error(e) => return Err(ClientError::Refused(e)),
            ControlS2c::Kicked(k) => return Err(ClientError::Kicked(k)),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )));
            }
        };
        Ok(Client {
            endpoint,
            connection,
            send,
            recv,
            welcome,
            decoder: DeltaDecoder::default(),
            seq: 0,
            recent: VecDeque::with_capacity(INPUT_FRAMES_MAX),
        })
    }

    /// The session's parameters.
    pub fn welcome(&self) -> &WelcomeS2c {
        &self.welcome
    }

    /// The underlying connection (statistics, raw datagrams in tests).
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    /// Sends one input: a move of `move_m` metres and an optional attack, with the
    /// previous inputs repeated so that a lost datagram loses nothing.
    pub fn send_input(&mut self, move_m: Vec2, attack: Option<NetId>) -> Result<(), ClientError> {
        self.seq += 1;
        if self.recent.len() == INPUT_FRAMES_MAX {
            self.recent.pop_back();
        }
        self.recent.push_front(InputFrame {
            move_q: quantize_move(move_m),
            attack,
        });
        let msg = InputC2s {
            seq: self.seq,
            ack_tick: self.decoder.newest_tick(),
            frames: self.recent.iter().copied().collect(),
        };
        let bytes =
            codec::encode_datagram(&msg).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.connection
            .send_datagram(bytes.into())
            .map_err(|e| ClientError::Connection(e.to_string()))
    }

    /// Waits for the next state newer than the last one applied, and returns the snapshot
    /// it describes. States against a baseline this client lost are skipped (the server
    /// sends a keyframe once it sees the client's ack lagging).
    pub async fn next_state(&mut self) -> Result<Snapshot, ClientError> {
        loop {
            // A state arrives as a datagram, or (too large for one) alone on a
            // unidirectional stream. Both awaits are cancel-safe; the stream is read to
            // its end only once accepted.
            let bytes: Vec<u8> = tokio::select! {
                datagram = self.connection.read_datagram() => {
                    datagram.map_err(|e| ClientError::Connection(e.to_string()))?.to_vec()
                }
                stream = self.connection.accept_uni() => {
                    let mut stream = stream.map_err(|e| ClientError::Connection(e.to_string()))?;
                    stream
                        .read_to_end(STATE_STREAM_BYTES_MAX)
                        .await
                        .map_err(|e| ClientError::Protocol(format!("state stream: {e}")))?
                }
            };
            let state: StateS2c = codec::decode(&bytes, STATE_STREAM_BYTES_MAX)?;
            match self.decoder.apply(&state) {
                Ok(Some(snapshot)) => return Ok(snapshot.clone()),
                Ok(None) | Err(DecodeError::UnknownBaseline(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits for the next control message (events, redirects, kicks).
    pub async fn next_control(&mut self) -> Result<ControlS2c, ClientError> {
        Ok(read_frame::<ControlS2c>(&mut self.recv).await?)
    }

    /// Logs out and waits until the server confirms (its state is then saved).
    pub async fn logout(mut self) -> Result<(), ClientError> {
        write_frame(&mut self.send, &ControlC2s::Logout).await?;
        loop {
            match read_frame::<ControlS2c>(&mut self.recv).await? {
                ControlS2c::Bye => break,
                ControlS2c::Kicked(k) => return Err(ClientError::Kicked(k)),
                _ => continue,
            }
        }
        self.connection.close(0u32.into(), b"bye");
        self.endpoint.wait_idle().await;
        Ok(())
    }
}
