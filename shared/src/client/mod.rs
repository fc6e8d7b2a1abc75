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

use crate::ids::{NetId, PlayerId};
use crate::math::Vec2;
use crate::protocol::codec::{self, DecodeError};
use crate::protocol::delta::{DeltaDecoder, Snapshot};
use crate::protocol::io::{FrameError, FrameReader, read_frame, write_frame};
use crate::protocol::limits::{INPUT_FRAMES_MAX, STATE_STREAM_BYTES_MAX};
use crate::protocol::messages::*;
use crate::protocol::quantize::quantize_move;
use crate::protocol::{ALPN, PROTOCOL_VERSION, close_code};

mod connection;

use connection::{ConnectionTask, hello, open_link};
pub use connection::{endpoint, quic_client_config};

/// States queued from the connection task to the caller. When full (the caller reads too
/// slowly) new states are dropped: the next one, a delta against the acked tick, makes up.
pub const STATES_QUEUE_LEN_MAX: usize = 64;
/// Control messages (events, redirects) queued for the caller. When full (the caller does
/// not read them) newer ones are dropped and counted in [`ClientStats::events_dropped`]:
/// the connection task never waits on the caller, so states, kicks and redirects keep
/// flowing.
pub const CONTROL_QUEUE_LEN_MAX: usize = 256;
/// Requests (`Buy`, `Refund`, `GetEconomy`) waiting to be written to the control stream;
/// past it [`Client::request`] fails with [`ClientError::Busy`].
pub const REQUESTS_QUEUE_LEN_MAX: usize = 16;

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
    /// [`REQUESTS_QUEUE_LEN_MAX`] requests wait to be sent; this one was not queued.
    #[error("too many requests waiting to be sent")]
    Busy,
}

impl ClientError {
    /// Whether trying again (after a backoff) can help.
    fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connection(_)
            | ClientError::Timeout
            | ClientError::NotConnected
            | ClientError::Busy => true,
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
    requests: mpsc::Sender<ControlC2s>,
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
        let (requests, requests_rx) = mpsc::channel(REQUESTS_QUEUE_LEN_MAX);
        let task = ConnectionTask {
            config: config.clone(),
            endpoint,
            server: config.server,
            shared: shared.clone(),
            resume_ticket: welcome.resume_ticket.clone(),
            generation: 1,
            deliveries: deliveries_tx,
            control: control_tx,
            requests: requests_rx,
        };
        let task = tokio::spawn(task.run(link, logout_rx));
        Ok(Client {
            shared,
            deliveries,
            control,
            logout: Some(logout_tx),
            requests,
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

    /// Sends an economy request on the control stream: `Buy`, `Refund` or `GetEconomy`
    /// (PROTOCOL.md section 3). Its answers (`TxResult`, `Economy`) arrive through
    /// [`Client::next_control`]. Queued while the client reconnects, and sent on the new
    /// connection: a `Buy` or `Refund` carries its idempotency key, so sending it again
    /// (after an answer that never came) is safe. `Hello` and `Logout` are not requests.
    pub fn request(&self, request: ControlC2s) -> Result<(), ClientError> {
        if matches!(request, ControlC2s::Hello(_) | ControlC2s::Logout) {
            return Err(ClientError::Protocol(
                "Hello and Logout are the client's own (see Client::logout)".into(),
            ));
        }
        match self.requests.try_send(request) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(ClientError::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(self.failure().unwrap_or(ClientError::NotConnected))
            }
        }
    }

    /// Buys `count` of `item` from `shop`, with the idempotency key `key` (see
    /// [`Client::request`]).
    pub fn buy(&self, key: &str, shop: &str, item: &str, count: u32) -> Result<(), ClientError> {
        self.request(ControlC2s::Buy(BuyC2s {
            key: key.to_owned(),
            shop: shop.to_owned(),
            item: item.to_owned(),
            count,
        }))
    }

    /// Refunds the purchase made with the key `purchase`, with the key `key`.
    pub fn refund(&self, key: &str, purchase: &str) -> Result<(), ClientError> {
        self.request(ControlC2s::Refund(RefundC2s {
            key: key.to_owned(),
            purchase: purchase.to_owned(),
        }))
    }

    /// Asks for the player's economy (answered with `ControlS2c::Economy`).
    pub fn get_economy(&self) -> Result<(), ClientError> {
        self.request(ControlC2s::GetEconomy)
    }

    /// Offers `with` a trade under the key `key`: this player gives `give` and receives
    /// `take` once `with` accepts, within `ttl_ms`.
    pub fn trade_offer(
        &self,
        key: &str,
        with: PlayerId,
        give: Goods,
        take: Goods,
        ttl_ms: u32,
    ) -> Result<(), ClientError> {
        self.request(ControlC2s::TradeOffer(TradeOfferC2s {
            key: key.to_owned(),
            with,
            give,
            take,
            ttl_ms,
        }))
    }

    /// Accepts the offer `offer` (its key) that `from` made to this player.
    pub fn trade_accept(&self, key: &str, from: PlayerId, offer: &str) -> Result<(), ClientError> {
        self.request(ControlC2s::TradeAccept(TradeAcceptC2s {
            key: key.to_owned(),
            from,
            offer: offer.to_owned(),
        }))
    }

    /// Withdraws this player's open offer `offer`.
    pub fn trade_cancel(&self, key: &str, offer: &str) -> Result<(), ClientError> {
        self.request(ControlC2s::TradeCancel(TradeCancelC2s {
            key: key.to_owned(),
            offer: offer.to_owned(),
        }))
    }

    /// Sends a chat message on `channel` (answered with a `Reply` under `id`; its
    /// recipients, this player among them for `say`, region and global, get `Chat`).
    pub fn chat(&self, id: u32, channel: ChatChannel, text: &str) -> Result<(), ClientError> {
        self.request(ControlC2s::Chat(ChatC2s {
            id,
            channel,
            text: text.to_owned(),
        }))
    }

    /// Asks for the first `count` of leaderboard `board` and this player's standing
    /// (answered with `Leaderboard`).
    pub fn get_leaderboard(&self, board: LeaderboardKind, count: u8) -> Result<(), ClientError> {
        self.request(ControlC2s::GetLeaderboard(GetLeaderboardC2s {
            board,
            count,
        }))
    }

    /// Sends a slash command line such as `/who` (answered with a `Reply` under `id`).
    pub fn command(&self, id: u32, line: &str) -> Result<(), ClientError> {
        self.request(ControlC2s::Command(CommandC2s {
            id,
            line: line.to_owned(),
        }))
    }

    /// The next control message if one is waiting, without waiting (see
    /// [`Client::next_control`]).
    pub fn try_next_control(&mut self) -> Option<ControlS2c> {
        self.control.try_recv().ok()
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
