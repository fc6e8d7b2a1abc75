//! The Rust client library (feature `client`): connect to a node over QUIC with a pinned
//! certificate, log in with a token, send inputs (with redundancy for loss), receive
//! delta-encoded states rebuilt into [`Snapshot`]s, and survive the network: an explicit
//! [`ConnectionState`] machine reconnects after a dropped connection with capped
//! exponential backoff and the session's resume ticket, and follows `Redirect`s to other
//! nodes (PROTOCOL.md section 6).
//!
//! A background task owns the QUIC connection and talks to [`Client`] through bounded
//! channels, so every `async` method here is cancel-safe: a game loop may `select!` over
//! [`Client::next_state`] and a timer without ever losing a half-done reconnect.
//!
//! ```text
//!  Disconnected -> Connecting -> Connected <-> Reconnecting
//!                       |            |              |
//!                       +------------+--------------+--> Failed
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, oneshot, watch};

use crate::ids::NetId;
use crate::math::Vec2;
use crate::protocol::codec::{self, DecodeError};
use crate::protocol::delta::{DeltaDecoder, Snapshot};
use crate::protocol::io::{FrameError, FrameReader, read_frame, write_frame};
use crate::protocol::limits::{INPUT_FRAMES_MAX, STATE_STREAM_BYTES_MAX};
use crate::protocol::messages::*;
use crate::protocol::quantize::quantize_move;
use crate::protocol::{ALPN, PROTOCOL_VERSION, close_code};

/// States queued from the connection task to the caller. When full (the caller reads too
/// slowly) new states are dropped: the next one, a delta against the acked tick, makes up.
pub const STATES_QUEUE_LEN_MAX: usize = 64;
/// Control messages (events, redirects) queued for the caller. When full (the caller does
/// not read them) newer ones are dropped and counted in [`ClientStats::events_dropped`]:
/// the connection task never waits on the caller, so states, kicks and redirects keep
/// flowing.
pub const CONTROL_QUEUE_LEN_MAX: usize = 256;

/// Where the client is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not started, or logged out.
    Disconnected,
    /// The first connection and login are in progress.
    Connecting,
    /// Logged in; states flow.
    Connected,
    /// The connection dropped (or a redirect is being followed); attempt `attempt` of
    /// [`ReconnectPolicy::attempts_max`] is in progress or waiting for its backoff.
    Reconnecting {
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Gave up: refused, kicked, or out of attempts. [`Client::failure`] says why.
    Failed,
}

/// How hard the client tries to get back after a dropped connection.
#[derive(Clone, Copy, Debug)]
pub struct ReconnectPolicy {
    /// The first backoff delay.
    pub delay_min: Duration,
    /// The longest backoff delay (doubling, with jitter, up to this).
    pub delay_max: Duration,
    /// Attempts before giving up (`Failed`). 0 never reconnects.
    pub attempts_max: u32,
}

impl Default for ReconnectPolicy {
    /// 100 ms doubling to 5 s, 8 attempts: about 15 s, inside a resume ticket's lifetime.
    fn default() -> Self {
        ReconnectPolicy {
            delay_min: Duration::from_millis(100),
            delay_max: Duration::from_secs(5),
            attempts_max: 8,
        }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The node's QUIC address.
    pub server: SocketAddr,
    /// The name its certificate is for (`localhost` for dev certificates). Redirects to
    /// other nodes of the cluster expect the same name and certificate.
    pub server_name: String,
    /// The node's certificate (DER), pinned: no other is accepted.
    pub pinned_cert: Vec<u8>,
    /// The login token (a JWT).
    pub token: String,
    /// How long one connect-and-login attempt may take.
    pub login_timeout: Duration,
    /// Reconnection after a dropped connection.
    pub reconnect: ReconnectPolicy,
    /// A resume ticket kept from an earlier session (a game client restarting within the
    /// ticket's lifetime), presented on the first login instead of a fresh login.
    pub resume_ticket: Option<Vec<u8>>,
}

impl ClientConfig {
    /// A configuration with a 5 s login timeout and the default [`ReconnectPolicy`].
    pub fn new(server: SocketAddr, server_name: &str, pinned_cert: Vec<u8>, token: String) -> Self {
        ClientConfig {
            server,
            server_name: server_name.into(),
            pinned_cert,
            token,
            login_timeout: Duration::from_secs(5),
            reconnect: ReconnectPolicy::default(),
            resume_ticket: None,
        }
    }
}

/// Why the client could not connect or continue.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// Not connected right now (reconnecting); the input was not sent.
    #[error("not connected")]
    NotConnected,
}

impl ClientError {
    /// Whether trying again (after a backoff) can help.
    fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connection(_) | ClientError::Timeout | ClientError::NotConnected => true,
            // The server says when: worth another try (a player moving between nodes).
            ClientError::Refused(e) => {
                matches!(e.code, ErrorCode::ServerFull | ErrorCode::RateLimited)
                    || e.retry_after_ms.is_some()
            }
            ClientError::Setup(_) | ClientError::Kicked(_) | ClientError::Protocol(_) => false,
        }
    }
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

/// Counters over the client's life (all connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Successful reconnections after a drop.
    pub reconnects: u64,
    /// Redirects followed.
    pub redirects: u64,
    /// UDP bytes received.
    pub bytes_in: u64,
    /// UDP bytes sent.
    pub bytes_out: u64,
    /// States dropped because the caller read too slowly.
    pub states_dropped: u64,
    /// Control messages (events) dropped because the caller did not read them.
    pub events_dropped: u64,
}

/// What the connection task hands the caller, in order.
enum Delivery {
    /// A state as received.
    State(StateS2c),
    /// A new connection (resume or redirect), the `generation`th, replaced the old one:
    /// baselines and the newest tick are gone (ticks are per node).
    NewSession {
        welcome: WelcomeS2c,
        generation: u64,
    },
}

/// What the caller and the task share.
struct Shared {
    /// The current connection and its generation (1 for the first, +1 for each new one):
    /// input sequence numbers and acks are per connection.
    connection: watch::Sender<Option<(u64, quinn::Connection)>>,
    state: watch::Sender<ConnectionState>,
    failure: Mutex<Option<ClientError>>,
    reconnects: AtomicU64,
    redirects: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    states_dropped: AtomicU64,
    events_dropped: AtomicU64,
}

impl Shared {
    fn set_state(&self, state: ConnectionState) {
        self.state.send_replace(state);
    }

    fn fail(&self, error: ClientError) -> ClientError {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(error.clone());
        }
        self.connection.send_replace(None);
        self.set_state(ConnectionState::Failed);
        error
    }
}

/// A session with a node, kept alive across dropped connections and redirects.
pub struct Client {
    shared: Arc<Shared>,
    deliveries: mpsc::Receiver<Delivery>,
    control: mpsc::Receiver<ControlS2c>,
    logout: Option<oneshot::Sender<oneshot::Sender<Result<(), ClientError>>>>,
    task: tokio::task::JoinHandle<()>,
    welcome: WelcomeS2c,
    decoder: DeltaDecoder,
    /// The connection the decoder's states came from: its ticks are acknowledged on that
    /// connection only.
    decoder_generation: u64,
    /// The connection `seq` and `recent` count on.
    input_generation: u64,
    seq: u32,
    /// The newest inputs, newest first, repeated in each datagram.
    recent: VecDeque<InputFrame>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Connects and logs in (state `Connecting`, then `Connected`), with
    /// [`ClientConfig::resume_ticket`] if set. Fails at once, without retrying, if the
    /// first attempt fails: a bad token, ticket or address is not transient.
    pub async fn connect(config: &ClientConfig) -> Result<Client, ClientError> {
        let (state, _) = watch::channel(ConnectionState::Connecting);
        let (connection, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            connection,
            state,
            failure: Mutex::new(None),
            reconnects: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            states_dropped: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
        });
        let endpoint = endpoint(config)?;
        let hello = hello(&config.token, config.resume_ticket.clone());
        let (link, welcome) = match open_link(&endpoint, config.server, config, &hello).await {
            Ok(opened) => opened,
            Err(e) => return Err(shared.fail(e)),
        };
        shared
            .connection
            .send_replace(Some((1, link.connection.clone())));
        shared.set_state(ConnectionState::Connected);
        let (deliveries_tx, deliveries) = mpsc::channel(STATES_QUEUE_LEN_MAX);
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE_LEN_MAX);
        let (logout_tx, logout_rx) = oneshot::channel();
        let task = ConnectionTask {
            config: config.clone(),
            endpoint,
            server: config.server,
            shared: shared.clone(),
            resume_ticket: welcome.resume_ticket.clone(),
            generation: 1,
            deliveries: deliveries_tx,
            control: control_tx,
        };
        let task = tokio::spawn(task.run(link, logout_rx));
        Ok(Client {
            shared,
            deliveries,
            control,
            logout: Some(logout_tx),
            task,
            welcome,
            decoder: DeltaDecoder::default(),
            decoder_generation: 1,
            input_generation: 0,
            seq: 0,
            recent: VecDeque::with_capacity(INPUT_FRAMES_MAX),
        })
    }

    /// The current session's parameters (updated by resumes and redirects once the
    /// caller has read up to them through [`Client::next_state`]).
    pub fn welcome(&self) -> &WelcomeS2c {
        &self.welcome
    }

    /// Where the client is now.
    pub fn state(&self) -> ConnectionState {
        *self.shared.state.borrow()
    }

    /// Why the client is `Failed`, if it is.
    pub fn failure(&self) -> Option<ClientError> {
        self.shared.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Counters over all connections so far.
    pub fn stats(&self) -> ClientStats {
        let current = self.connection().map(|c| c.stats());
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            reconnects: load(&self.shared.reconnects),
            redirects: load(&self.shared.redirects),
            bytes_in: load(&self.shared.bytes_in) + current.map_or(0, |s| s.udp_rx.bytes),
            bytes_out: load(&self.shared.bytes_out) + current.map_or(0, |s| s.udp_tx.bytes),
            states_dropped: load(&self.shared.states_dropped),
            events_dropped: load(&self.shared.events_dropped),
        }
    }

    /// The current QUIC connection, if connected (statistics, raw datagrams in tests).
    pub fn connection(&self) -> Option<quinn::Connection> {
        self.shared
            .connection
            .borrow()
            .as_ref()
            .map(|(_, c)| c.clone())
    }

    /// Sends one input: a move of `move_m` metres and an optional attack, with the
    /// previous inputs repeated so that a lost datagram loses nothing. While reconnecting
    /// the input is not sent (`NotConnected`); the simulation goes on without it.
    pub fn send_input(&mut self, move_m: Vec2, attack: Option<NetId>) -> Result<(), ClientError> {
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        let Some((generation, connection)) = self.shared.connection.borrow().clone() else {
            return Err(ClientError::NotConnected);
        };
        if generation != self.input_generation {
            // A new connection: sequence numbers start at 1 again (PROTOCOL.md).
            self.input_generation = generation;
            self.seq = 0;
            self.recent.clear();
        }
        self.seq = self.seq.wrapping_add(1);
        if self.recent.len() == INPUT_FRAMES_MAX {
            self.recent.pop_back();
        }
        self.recent.push_front(InputFrame {
            move_q: quantize_move(move_m),
            attack,
        });
        // Until the new connection's first state is applied, the newest tick is another
        // connection's (maybe another node's): acknowledge nothing.
        let ack_tick = if generation == self.decoder_generation {
            self.decoder.newest_tick()
        } else {
            0
        };
        let msg = InputC2s {
            seq: self.seq,
            ack_tick,
            frames: self.recent.iter().copied().collect(),
        };
        let bytes =
            codec::encode_datagram(&msg).map_err(|e| ClientError::Protocol(e.to_string()))?;
        connection
            .send_datagram(bytes.into())
            .map_err(|e| ClientError::Connection(e.to_string()))
    }

    /// Waits for the next state newer than the last one applied, and returns the snapshot
    /// it describes: the client's table of visible entities. States against a baseline
    /// this client lost are skipped (the server sends a keyframe once it sees the ack
    /// lagging). Reconnects happen underneath; `Err` only once the client has `Failed`.
    pub async fn next_state(&mut self) -> Result<Snapshot, ClientError> {
        loop {
            let Some(delivery) = self.deliveries.recv().await else {
                return Err(self.failure().unwrap_or(ClientError::NotConnected));
            };
            let state = match delivery {
                Delivery::State(state) => state,
                Delivery::NewSession {
                    welcome,
                    generation,
                } => {
                    // The server starts the new session from a keyframe; its ticks may be
                    // lower (another node's).
                    self.decoder = DeltaDecoder::default();
                    self.decoder_generation = generation;
                    self.welcome = welcome;
                    continue;
                }
            };
            match self.decoder.apply(&state) {
                Ok(Some(snapshot)) => return Ok(snapshot.clone()),
                Ok(None) | Err(DecodeError::UnknownBaseline(_)) => continue,
                Err(e) => {
                    let error = self.shared.fail(e.into());
                    self.task.abort();
                    return Err(error);
                }
            }
        }
    }

    /// Waits for the next control message: events, and `Redirect`s (already followed when
    /// they arrive here, for the caller's information). `Err` once the client has `Failed`.
    pub async fn next_control(&mut self) -> Result<ControlS2c, ClientError> {
        match self.control.recv().await {
            Some(message) => Ok(message),
            None => Err(self.failure().unwrap_or(ClientError::NotConnected)),
        }
    }

    /// Logs out and waits until the server confirms (its state is then saved).
    pub async fn logout(mut self) -> Result<(), ClientError> {
        let Some(logout) = self.logout.take() else {
            return Err(ClientError::NotConnected);
        };
        let (done, result) = oneshot::channel();
        if logout.send(done).is_err() {
            return Err(self.failure().unwrap_or(ClientError::NotConnected));
        }
        result
            .await
            .unwrap_or_else(|_| Err(self.failure().unwrap_or(ClientError::NotConnected)))
    }
}

/// Control frames waiting in a link's reader: the server sends few.
const LINK_FRAMES_LEN_MAX: usize = 4;

/// One QUIC connection with its control stream.
struct Link {
    connection: quinn::Connection,
    send: quinn::SendStream,
    frames: FrameReader<ControlS2c>,
}

/// Why the connection task leaves its current link.
enum Leave {
    /// The connection dropped: resume.
    Dropped(ClientError),
    /// Follow a redirect.
    Redirect(RedirectS2c),
    /// The session is over.
    Final(ClientError),
    /// The caller asked to log out.
    Logout(oneshot::Sender<Result<(), ClientError>>),
}

/// Owns the connection: forwards states and control messages, reconnects, redirects.
struct ConnectionTask {
    config: ClientConfig,
    endpoint: quinn::Endpoint,
    /// The node the session is on now (changes with redirects).
    server: SocketAddr,
    shared: Arc<Shared>,
    resume_ticket: Vec<u8>,
    /// The current connection's generation.
    generation: u64,
    deliveries: mpsc::Sender<Delivery>,
    control: mpsc::Sender<ControlS2c>,
}

impl ConnectionTask {
    async fn run(
        mut self,
        mut link: Link,
        mut logout: oneshot::Receiver<oneshot::Sender<Result<(), ClientError>>>,
    ) {
        loop {
            let leave = self.serve(&mut link, &mut logout).await;
            self.account(&link.connection);
            let (addr, ticket) = match leave {
                Leave::Logout(done) => {
                    let result = self.log_out(link).await;
                    self.shared.connection.send_replace(None);
                    self.shared.set_state(ConnectionState::Disconnected);
                    self.endpoint.wait_idle().await;
                    let _ = done.send(result);
                    return;
                }
                Leave::Final(error) => {
                    link.connection
                        .close(close_code::NORMAL.into(), b"session over");
                    self.shared.fail(error);
                    return;
                }
                Leave::Dropped(error) => {
                    tracing::debug!(%error, "connection dropped; resuming");
                    (self.server, self.resume_ticket.clone())
                }
                Leave::Redirect(redirect) => {
                    link.connection
                        .close(close_code::NORMAL.into(), b"following redirect");
                    match resolve(&redirect.addr).await {
                        Some(addr) => {
                            self.shared.redirects.fetch_add(1, Ordering::Relaxed);
                            self.forward(ControlS2c::Redirect(redirect.clone()));
                            (addr, redirect.ticket)
                        }
                        None => {
                            self.shared.fail(ClientError::Protocol(format!(
                                "redirect to an unresolvable address {:?}",
                                redirect.addr
                            )));
                            return;
                        }
                    }
                }
            };
            drop(link);
            self.shared.connection.send_replace(None);
            link = match self.reconnect(addr, ticket).await {
                Ok(link) => link,
                Err(error) => {
                    self.shared.fail(error);
                    return;
                }
            };
        }
    }

    /// Forwards traffic of `link` until it ends.
    async fn serve(
        &mut self,
        link: &mut Link,
        logout: &mut oneshot::Receiver<oneshot::Sender<Result<(), ClientError>>>,
    ) -> Leave {
        loop {
            tokio::select! {
                datagram = link.connection.read_datagram() => match datagram {
                    Ok(bytes) => self.deliver_state(&bytes),
                    Err(e) => return self.lost(link, e.to_string()),
                },
                stream = link.connection.accept_uni() => {
                    let mut stream = match stream {
                        Ok(stream) => stream,
                        Err(e) => return self.lost(link, e.to_string()),
                    };
                    match stream.read_to_end(STATE_STREAM_BYTES_MAX).await {
                        Ok(bytes) => self.deliver_state(&bytes),
                        Err(e) => return self.lost(link, format!("state stream: {e}")),
                    }
                }
                frame = link.frames.recv() => match frame {
                    Some(Ok(ControlS2c::Redirect(redirect))) => return Leave::Redirect(redirect),
                    Some(Ok(ControlS2c::Kicked(kicked))) => return Leave::Final(ClientError::Kicked(kicked)),
                    Some(Ok(ControlS2c::Error(error))) => return Leave::Final(ClientError::Refused(error)),
                    Some(Ok(ControlS2c::ResumeTicket(ticket))) => self.resume_ticket = ticket,
                    Some(Ok(message)) => self.forward(message),
                    Some(Err(FrameError::Closed(reason))) => return self.lost(link, reason),
                    None => return self.lost(link, "control stream ended".into()),
                    Some(Err(e)) => return Leave::Final(e.into()),
                },
                done = &mut *logout => match done {
                    Ok(done) => return Leave::Logout(done),
                    // The Client is gone: nothing left to serve.
                    Err(_) => return Leave::Final(ClientError::NotConnected),
                },
            }
        }
    }

    /// Hands a control message to the caller without waiting (see
    /// [`CONTROL_QUEUE_LEN_MAX`]). A closed queue means the `Client` is gone, and this task
    /// with it.
    fn forward(&self, message: ControlS2c) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.control.try_send(message) {
            self.shared.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Classifies the end of `link`: a final frame or close code the server sent ends the
    /// session; anything else (a timeout, a reset, a node restart) is resumed.
    fn lost(&mut self, link: &mut Link, error: String) -> Leave {
        // Frames read just before the close: a final one decides; events still go out.
        while let Some(frame) = link.frames.try_recv() {
            match frame {
                Ok(ControlS2c::Kicked(kicked)) => {
                    return Leave::Final(ClientError::Kicked(kicked));
                }
                Ok(ControlS2c::Redirect(redirect)) => return Leave::Redirect(redirect),
                Ok(ControlS2c::ResumeTicket(ticket)) => self.resume_ticket = ticket,
                Ok(message) => self.forward(message),
                Err(_) => break,
            }
        }
        match link.connection.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(close))
                if [
                    close_code::REFUSED,
                    close_code::TAKEN_OVER,
                    close_code::PROTOCOL_VIOLATION,
                ]
                .iter()
                .any(|&code| close.error_code == code.into()) =>
            {
                Leave::Final(ClientError::Connection(format!(
                    "closed by the server: {close}"
                )))
            }
            Some(reason) => Leave::Dropped(ClientError::Connection(reason.to_string())),
            None => Leave::Dropped(ClientError::Connection(error)),
        }
    }

    fn deliver_state(&self, bytes: &[u8]) {
        // A state that does not decode is skipped like a lost one; the decoder refuses
        // anything inconsistent before it touches the table.
        let Ok(state) = codec::decode::<StateS2c>(bytes, STATE_STREAM_BYTES_MAX) else {
            return;
        };
        if self.deliveries.try_send(Delivery::State(state)).is_err() {
            self.shared.states_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds a finished connection's byte counts to the totals.
    fn account(&self, connection: &quinn::Connection) {
        let stats = connection.stats();
        self.shared
            .bytes_in
            .fetch_add(stats.udp_rx.bytes, Ordering::Relaxed);
        self.shared
            .bytes_out
            .fetch_add(stats.udp_tx.bytes, Ordering::Relaxed);
    }

    /// Connects to `addr` with `ticket`, retrying with capped exponential backoff and
    /// jitter. A refused ticket (expired, or from another cluster) falls back once to a
    /// plain login with the token.
    async fn reconnect(&mut self, addr: SocketAddr, ticket: Vec<u8>) -> Result<Link, ClientError> {
        let policy = self.config.reconnect;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(policy.delay_min)
            .with_max_delay(policy.delay_max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(policy.attempts_max as usize)
            .build();
        let mut ticket = Some(ticket);
        let mut attempt = 0u32;
        let mut last_error = ClientError::NotConnected;
        while attempt < policy.attempts_max {
            attempt += 1;
            self.shared
                .set_state(ConnectionState::Reconnecting { attempt });
            let hello = hello(&self.config.token, ticket.clone());
            match open_link(&self.endpoint, addr, &self.config, &hello).await {
                Ok((link, welcome)) => {
                    self.server = addr;
                    self.resume_ticket = welcome.resume_ticket.clone();
                    self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.generation += 1;
                    let generation = self.generation;
                    // Ordered with the states: the caller resets its decoder here.
                    if self
                        .deliveries
                        .send(Delivery::NewSession {
                            welcome,
                            generation,
                        })
                        .await
                        .is_err()
                    {
                        return Err(ClientError::NotConnected);
                    }
                    self.shared
                        .connection
                        .send_replace(Some((generation, link.connection.clone())));
                    self.shared.set_state(ConnectionState::Connected);
                    return Ok(link);
                }
                Err(ClientError::Refused(e))
                    if e.code == ErrorCode::BadTicket && ticket.is_some() =>
                {
                    tracing::debug!(message = %e.message, "ticket refused; logging in with the token");
                    ticket = None;
                    attempt -= 1;
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    // Never sooner than the server said (a rate limit, a full node).
                    let said = match &e {
                        ClientError::Refused(r) => r
                            .retry_after_ms
                            .map(|ms| Duration::from_millis(u64::from(ms)).min(policy.delay_max)),
                        _ => None,
                    };
                    last_error = e;
                    match delays.next() {
                        Some(delay) => {
                            tokio::time::sleep(delay.max(said.unwrap_or_default())).await
                        }
                        None => break,
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Sends `Logout` and waits for `Bye` (the server has saved the player).
    async fn log_out(&mut self, mut link: Link) -> Result<(), ClientError> {
        write_frame(&mut link.send, &ControlC2s::Logout).await?;
        let result = loop {
            match link.frames.recv().await {
                Some(Ok(ControlS2c::Bye)) => break Ok(()),
                Some(Ok(ControlS2c::Kicked(k))) => break Err(ClientError::Kicked(k)),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(e.into()),
                None => break Err(ClientError::Connection("closed before Bye".into())),
            }
        };
        link.connection.close(close_code::NORMAL.into(), b"bye");
        self.account(&link.connection);
        result
    }
}

fn hello(token: &str, ticket: Option<Vec<u8>>) -> ControlC2s {
    ControlC2s::Hello(HelloC2s {
        protocol_version: PROTOCOL_VERSION,
        token: token.into(),
        ticket,
    })
}

/// `host:port` to an address (the first the resolver gives).
async fn resolve(addr: &str) -> Option<SocketAddr> {
    if let Ok(addr) = addr.parse() {
        return Some(addr);
    }
    tokio::net::lookup_host(addr).await.ok()?.next()
}

/// The QUIC endpoint a [`Client`] connects from: TLS 1.3, ALPN `tessera/1`, trusting only
/// [`ClientConfig::pinned_cert`]. Public for tools and tests that speak the protocol by
/// hand (PROTOCOL.md) on a correctly configured connection.
pub fn endpoint(config: &ClientConfig) -> Result<quinn::Endpoint, ClientError> {
    let client_config = quic_client_config(config)?;
    let bind: SocketAddr = if config.server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let mut endpoint =
        quinn::Endpoint::client(bind).map_err(|e| ClientError::Setup(e.to_string()))?;
    endpoint.set_default_client_config(client_config);
    Ok(endpoint)
}

/// The QUIC client configuration of [`endpoint`]: TLS 1.3, ALPN, the pinned certificate,
/// and quinn's default transport, which advertises `max_datagram_frame_size` 65535 as
/// PROTOCOL.md requires. Public for tests that vary it.
pub fn quic_client_config(config: &ClientConfig) -> Result<quinn::ClientConfig, ClientError> {
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
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| ClientError::Setup(e.to_string()))?;
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(3)));
    client_config.transport_config(Arc::new(transport));
    Ok(client_config)
}

/// One connect-and-login attempt, bounded by the login timeout.
async fn open_link(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    config: &ClientConfig,
    hello: &ControlC2s,
) -> Result<(Link, WelcomeS2c), ClientError> {
    tokio::time::timeout(config.login_timeout, async {
        let connection = endpoint
            .connect(addr, &config.server_name)
            .map_err(|e| ClientError::Connection(e.to_string()))?
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        write_frame(&mut send, hello).await?;
        let welcome = match read_frame::<ControlS2c>(&mut recv).await? {
            ControlS2c::Welcome(w) => w,
            ControlS2c::Error(e) => {
                // Close now: the server waits for it before closing itself.
                connection.close(close_code::NORMAL.into(), b"refused");
                return Err(ClientError::Refused(e));
            }
            ControlS2c::Kicked(k) => return Err(ClientError::Kicked(k)),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )));
            }
        };
        Ok((
            Link {
                connection,
                send,
                frames: FrameReader::spawn(recv, LINK_FRAMES_LEN_MAX),
            },
            welcome,
        ))
    })
    .await
    .map_err(|_| ClientError::Timeout)?
}
