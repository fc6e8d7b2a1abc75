//! The network edge: the QUIC endpoint, its accept loop (connection cap, QUIC Retry under
//! handshake load) and one [`session`] task per connection. Everything here runs on tokio;
//! the simulation runs on the driver thread and meets it only through bounded channels.

mod chat;
mod command;
mod economy;
pub mod login_limit;
pub mod session;
pub mod tls;

use std::sync::Arc;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tracing::Instrument;

use crate::auth::{TicketKeys, TokenVerifier};
use crate::node::NodeHandle;

/// Connections a node holds at once; more are refused at the handshake.
pub const CONNECTIONS_MAX: usize = 2_000;
/// Handshakes in progress above which new clients must first prove their address (QUIC
/// Retry), so a spoofed flood costs the node one stateless packet each.
pub const RETRY_ABOVE_HANDSHAKES: usize = 64;

/// Counters of the endpoint.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Handshakes in progress now.
    pub handshakes: AtomicUsize,
    /// Connections refused at the cap.
    pub refused: AtomicU64,
    /// Retries sent.
    pub retries: AtomicU64,
    /// Input datagrams passed to the driver.
    pub inputs_accepted: AtomicU64,
    /// Input datagrams dropped by a player's rate limit.
    pub inputs_rate_limited: AtomicU64,
    /// Input datagrams dropped because the driver's inbox was full.
    pub inputs_node_busy: AtomicU64,
    /// Sessions ended for breaking the protocol.
    pub violations: AtomicU64,
    /// Logins with a resume ticket.
    pub resumes: AtomicU64,
    /// Logins with a redirect ticket.
    pub redirect_logins: AtomicU64,
    /// Logins refused for a bad or expired ticket.
    pub bad_tickets: AtomicU64,
    /// Resumes of sessions an operator kicked, answered with the kick.
    pub kicked_resumes: AtomicU64,
    /// Logins refused by the rate limit of their remote address.
    pub logins_rate_limited: AtomicU64,
    /// Logins refused because another node holds the player (cluster only).
    pub logins_held_elsewhere: AtomicU64,
    /// Datagrams received from clients.
    pub datagrams_in: AtomicU64,
    /// Their payload bytes (the protocol's, without QUIC's overhead).
    pub payload_bytes_in: AtomicU64,
    /// State datagrams handed to QUIC.
    pub datagrams_out: AtomicU64,
    /// Payload bytes of states sent (datagrams and streams).
    pub payload_bytes_out: AtomicU64,
    /// States too large for a datagram dropped because their connection already had
    /// `session::STATE_STREAMS_IN_FLIGHT_MAX` on streams not yet acknowledged.
    pub state_streams_busy: AtomicU64,
}

/// A token bucket of `limit`.
fn limiter(limit: tessera_shared::config::RateLimit) -> governor::DefaultDirectRateLimiter {
    use std::num::NonZeroU32;
    let per_s = NonZeroU32::new(limit.per_s).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    governor::RateLimiter::direct(governor::Quota::per_second(per_s).allow_burst(burst))
}

/// Takes a request from `limiter`; `None` if it had room, or the milliseconds until it
/// has (at least 1).
fn over_limit(limiter: &governor::DefaultDirectRateLimiter) -> Option<u32> {
    use governor::clock::{Clock, DefaultClock};
    let not_until = limiter.check().err()?;
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    Some(u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1))
}

/// How sessions authenticate clients.
#[derive(Debug)]
pub struct Auth {
    /// Checks login tokens.
    pub verifier: TokenVerifier,
    /// Mints and checks resume and redirect tickets.
    pub tickets: TicketKeys,
    /// Logins per remote address, checked before the token or ticket.
    pub logins: login_limit::LoginLimiter,
}

/// What sessions use besides the driver: the players' saves, the economy, the chat.
#[derive(Clone, Debug)]
pub struct SessionServices {
    /// Player saves, bans and mutes.
    pub players: Arc<crate::players::Players>,
    /// The economy's committer (none: economy requests are refused `Unavailable`).
    pub economy: Option<crate::economy::Economy>,
    /// The chat.
    pub chat: crate::chat::Chat,
}

/// Accepts connections until the endpoint is closed.
pub async fn accept_loop(
    endpoint: quinn::Endpoint,
    node: NodeHandle,
    auth: Arc<Auth>,
    services: SessionServices,
    stats: Arc<EndpointStats>,
) {
    let next_session = Arc::new(AtomicU64::new(1));
    while let Some(incoming) = endpoint.accept().await {
        if stats.connections.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        if !incoming.remote_address_validated()
            && stats.handshakes.load(Ordering::Relaxed) >= RETRY_ABOVE_HANDSHAKES
        {
            stats.retries.fetch_add(1, Ordering::Relaxed);
            let _ = incoming.retry();
            continue;
        }
        let (node, auth, stats) = (node.clone(), auth.clone(), stats.clone());
        let services = services.clone();
        let session = next_session.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "session",
            session,
            remote = %incoming.remote_address(),
            player = tracing::field::Empty
        );
        tokio::spawn(
            async move {
                stats.handshakes.fetch_add(1, Ordering::Relaxed);
                let connecting = incoming.accept();
                let connection = match connecting {
                    Ok(connecting) => connecting.await,
                    Err(e) => Err(e),
                };
                stats.handshakes.fetch_sub(1, Ordering::Relaxed);
                let Ok(connection) = connection else { return };
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let end =
                    session::run(connection, node, auth, services, session, stats.clone()).await;
                tracing::info!(?end, "session ended");
                stats.connections.fetch_sub(1, Ordering::Relaxed);
            }
            .instrument(span),
        );
    }
}
