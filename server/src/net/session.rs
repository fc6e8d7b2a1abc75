//! One client connection: login on the control stream, then inputs in and states out until
//! logout, kick or disconnect. Untrusted bytes are decoded with size limits; a malformed
//! message ends the session (the node keeps running).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use governor::{Quota, RateLimiter};

use tessera_shared::protocol::codec::{self, DecodeError};
use tessera_shared::protocol::io::{FrameError, FrameReader, read_frame, write_frame};
use tessera_shared::protocol::limits::{
    DATAGRAM_FRAME_SIZE_MIN, DATAGRAM_PAYLOAD_BYTES_MIN, INPUT_FRAMES_MAX, RESUME_TICKET_REFRESH_S,
    TOKEN_BYTES_MAX,
};
use tessera_shared::protocol::messages::*;
use tessera_shared::protocol::{PROTOCOL_VERSION, close_code};
use tokio::sync::{Semaphore, oneshot};

use super::chat::ChatRequests;
use super::economy::EconomyRequests;
use super::{Auth, EndpointStats};
use crate::auth::{Ticket, TicketKind, unix_now_s};
use crate::cluster::{LOCATION_TTL, LoginRefusal};
use crate::economy::now_unix_ms;
use crate::node::{
    Command, LOGIN_RETRY_AFTER_MS, NodeHandle, Outgoing, SessionOutbox, session_outbox,
};
use crate::players::{Players, SaveReply};
use tessera_persistence::audit::Sanction;

/// How long a client has to open its control stream and log in.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Input datagrams a player may send per second, per tick of the node's rate: one per
/// tick is normal, twice that absorbs jitter. Beyond it (and a burst of one second of
/// ticks) datagrams are dropped and counted; the redundancy of `InputC2s` makes an honest
/// client lose nothing to an occasional drop.
pub const INPUTS_PER_TICK_MAX: u32 = 2;

/// How long a logout waits for its save to be durable before the client is told it is
/// not (the save stays pending and is written once the store is back).
pub const LOGOUT_SAVE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a final frame (Bye, Error, Kicked) the session waits this long for the client to
/// close: closing first could drop the frame undelivered.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// After a protocol violation the session waits this long for the client to acknowledge
/// the final frame (`Error { Malformed }` before login, `Kicked { ProtocolViolation }`
/// after) before closing with code 4: long enough for a round trip, short enough that a
/// flooding client is gone within a second.
pub const VIOLATION_CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Control frames queued from the reader task: a client sends almost none.
const CONTROL_QUEUE_LEN_MAX: usize = 4;
/// States a connection has on unidirectional streams (those too large for a datagram)
/// that its client has not acknowledged yet. A large state that finds this many is
/// dropped, as a lost datagram would be (the next state, a delta against the client's
/// ack, makes up for it): a client that falls behind costs the node at most this many
/// states' bytes, not a stream per tick.
pub const STATE_STREAMS_IN_FLIGHT_MAX: usize = 2;

/// Why a session ended, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Login refused with this code.
    Refused(ErrorCode),
    /// The player logged out.
    LoggedOut,
    /// Another connection took the player over.
    TakenOver,
    /// The client broke the protocol.
    Violation(String),
    /// The connection went away (the avatar waits for a resume).
    Disconnected,
    /// The player was sent to another node.
    Redirected,
    /// A resume of a session an operator kicked: answered with the kick.
    KickedBefore,
}

/// Runs a session on an established connection until it ends.
pub async fn run(
    connection: quinn::Connection,
    node: NodeHandle,
    auth: Arc<Auth>,
    services: super::SessionServices,
    session: u64,
    stats: Arc<EndpointStats>,
) -> SessionEnd {
    let super::SessionServices {
        players,
        economy,
        chat,
    } = services;
    let Ok(Ok((mut send, mut recv))) =
        tokio::time::timeout(LOGIN_TIMEOUT, connection.accept_bi()).await
    else {
        connection.close(close_code::LOGIN_TIMEOUT.into(), b"no control stream");
        return SessionEnd::Disconnected;
    };
    let hello = match tokio::time::timeout(LOGIN_TIMEOUT, read_frame::<ControlC2s>(&mut recv)).await
    {
        Ok(Ok(ControlC2s::Hello(hello))) => hello,
        Ok(Ok(_)) => {
            return violation_before_login(&connection, send, &stats, "Hello must come first")
                .await;
        }
        Ok(Err(FrameError::Closed(_))) | Err(_) => {
            connection.close(close_code::LOGIN_TIMEOUT.into(), b"login timeout");
            return SessionEnd::Disconnected;
        }
        Ok(Err(e)) => {
            return violation_before_login(&connection, send, &stats, &e.to_string()).await;
        }
    };
    // States travel in datagrams: a client that cannot take them would log in and never
    // see the world (or lose every large state). quinn reports the payload the peer's
    // `max_datagram_frame_size` and the path allow; None if it sent no such parameter.
    match connection.max_datagram_size() {
        Some(n) if n >= DATAGRAM_PAYLOAD_BYTES_MIN => {}
        found => {
            let msg = format!(
                "QUIC datagrams (RFC 9221) are required: send the max_datagram_frame_size \
                 transport parameter with at least {DATAGRAM_FRAME_SIZE_MIN} (65535 \
                 recommended); {}",
                match found {
                    None => "none was sent".to_string(),
                    Some(n) => format!("it allows only {n}-byte datagrams"),
                }
            );
            return refuse(
                &connection,
                &mut send,
                ErrorCode::UnsupportedTransport,
                &msg,
            )
            .await;
        }
    }
    if hello.protocol_version != PROTOCOL_VERSION {
        let msg = format!(
            "protocol version {} is not supported; this node speaks {PROTOCOL_VERSION}",
            hello.protocol_version
        );
        return refuse(&connection, &mut send, ErrorCode::VersionMismatch, &msg).await;
    }
    if hello.token.len() > TOKEN_BYTES_MAX {
        return refuse(
            &connection,
            &mut send,
            ErrorCode::BadToken,
            "token too long",
        )
        .await;
    }
    // Before the token or ticket: refused attempts must cost as little as possible.
    if let Err(wait) = auth.logins.check(connection.remote_address().ip()) {
        stats.logins_rate_limited.fetch_add(1, Ordering::Relaxed);
        let retry_after_ms = u32::try_from(wait.as_millis().max(1)).unwrap_or(u32::MAX);
        return refuse_with(
            &connection,
            &mut send,
            ErrorCode::RateLimited,
            "too many logins from this address: retry after retry_after_ms",
            Some(retry_after_ms),
        )
        .await;
    }
    // A ticket (resume or redirect) stands in for the token, which may have expired since.
    let (player, name, arriving, start) = match &hello.ticket {
        Some(ticket) => match auth.tickets.verify(ticket) {
            Ok(ticket) => {
                if let Some(kick) = node.kicks().ended(&ticket, now_unix_ms()) {
                    // The kick this client missed; its token may log it in again.
                    stats.kicked_resumes.fetch_add(1, Ordering::Relaxed);
                    let kicked = ControlS2c::Kicked(KickedS2c {
                        reason: KickReason::Admin,
                        message: kick.reason.to_string(),
                    });
                    end_with(
                        &connection,
                        &mut send,
                        &kicked,
                        close_code::TAKEN_OVER,
                        b"kicked",
                    )
                    .await;
                    return SessionEnd::KickedBefore;
                }
                let (counter, arriving) = match ticket.kind {
                    TicketKind::Resume => (&stats.resumes, None),
                    TicketKind::Redirect => (&stats.redirect_logins, ticket.region),
                };
                counter.fetch_add(1, Ordering::Relaxed);
                (ticket.player, ticket.name, arriving, None)
            }
            Err(e) => {
                stats.bad_tickets.fetch_add(1, Ordering::Relaxed);
                return refuse(&connection, &mut send, ErrorCode::BadTicket, &e.to_string()).await;
            }
        },
        None => match auth.verifier.verify(&hello.token) {
            Ok(login) => (login.player, login.name, None, login.start_region),
            Err(e) => return refuse(&connection, &mut send, e.code(), &e.to_string()).await,
        },
    };

    tracing::Span::current().record("player", tracing::field::display(player));

    // The login waits on the store, the player's location and the driver: a client that
    // gives up meanwhile (closes its connection) must not be logged in after all, or it
    // would take the player over from the session its next attempt opened.
    let (outbox, mut outbox_rx) = session_outbox();
    let state_streams = Arc::new(Semaphore::new(STATE_STREAMS_IN_FLIGHT_MAX));
    let login = log_in(
        &node,
        &players,
        &stats,
        player,
        session,
        (name.clone(), arriving, start),
        outbox,
    );
    let joined = tokio::select! {
        biased;
        _ = connection.closed() => {
            tracing::debug!(session, %player, "client left during its login");
            // A Join already queued is skipped by the driver once its reply is gone; one
            // applied just before is undone like any dropped connection.
            detach(&node, player, session).await;
            return SessionEnd::Disconnected;
        }
        joined = login => joined,
    };
    let joined = match joined {
        Ok(joined) => joined,
        Err(error) => {
            let code = error.code;
            let refusal = ControlS2c::Error(error);
            end_with(
                &connection,
                &mut send,
                &refusal,
                close_code::REFUSED,
                b"refused",
            )
            .await;
            return SessionEnd::Refused(code);
        }
    };
    // After the driver applied the login: later than any kick it applied before it.
    let began_ms = now_unix_ms();
    let ticket = |kind, region| Ticket {
        player,
        kind,
        region,
        name: name.clone(),
        session_began_ms: began_ms,
    };
    let welcome = ControlS2c::Welcome(WelcomeS2c {
        session,
        player,
        entity: tessera_shared::ids::NetId::of_player(player),
        region: joined.region,
        tick: joined.tick,
        tick_hz: u16::try_from(node.tick_hz()).unwrap_or(u16::MAX),
        resume_ticket: auth
            .tickets
            .issue(ticket(TicketKind::Resume, None), unix_now_s()),
        archetypes: node.archetypes().to_vec(),
    });
    if write_frame(&mut send, &welcome).await.is_err() {
        detach(&node, player, session).await;
        return SessionEnd::Disconnected;
    }
    tracing::info!(region = joined.region.0, "logged in");

    let mut control = FrameReader::<ControlC2s>::spawn(recv, CONTROL_QUEUE_LEN_MAX);
    let leaderboards = economy.as_ref().map(|e| e.leaderboards().clone());
    let mut economy = EconomyRequests::new(economy, chat.config().economy, chat.clone());
    let _listed = chat.logged_in(player, session, &name);
    let mut chat_requests = ChatRequests::new(
        chat.clone(),
        players.clone(),
        leaderboards,
        player,
        name.clone(),
    );

    let tick_hz = NonZeroU32::new(node.tick_hz()).unwrap_or(NonZeroU32::MIN);
    let rate =
        tick_hz.saturating_mul(NonZeroU32::new(INPUTS_PER_TICK_MAX).unwrap_or(NonZeroU32::MIN));
    let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(tick_hz));
    // A ticket lives TICKET_TTL_S: a fresh one every RESUME_TICKET_REFRESH_S keeps the
    // client's newest one valid for as long as the session lasts.
    let refresh = Duration::from_secs(RESUME_TICKET_REFRESH_S);
    let mut refresh_tickets =
        tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
    refresh_tickets.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = 'session: loop {
        tokio::select! {
            answers = economy.next() => {
                for answer in answers {
                    if write_frame(&mut send, &answer).await.is_err() {
                        break 'session SessionEnd::Disconnected;
                    }
                }
            }
            answer = chat_requests.next() => {
                if write_frame(&mut send, &answer).await.is_err() {
                    break 'session SessionEnd::Disconnected;
                }
            }
            _ = refresh_tickets.tick() => {
                let fresh = auth.tickets.issue(ticket(TicketKind::Resume, None), unix_now_s());
                if write_frame(&mut send, &ControlS2c::ResumeTicket(fresh)).await.is_err() {
                    break SessionEnd::Disconnected;
                }
            }
            datagram = connection.read_datagram() => {
                let Ok(bytes) = datagram else { break SessionEnd::Disconnected };
                stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
                stats.payload_bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if limiter.check().is_err() {
                    stats.inputs_rate_limited.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match decode_input(&bytes) {
                    Ok(input) => {
                        // A saturated node drops inputs rather than stalling the network.
                        match node.try_send(Command::Input { player, session, input }) {
                            Ok(()) => stats.inputs_accepted.fetch_add(1, Ordering::Relaxed),
                            Err(_) => stats.inputs_node_busy.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    Err(e) => break SessionEnd::Violation(format!("bad input datagram: {e}")),
                }
            }
            frame = control.recv() => match frame {
                Some(Ok(ControlC2s::Logout)) => {
                    let (done, saved) = oneshot::channel();
                    leave(&node, player, session, Some(done)).await;
                    // Bye only once the final state is durable: an acknowledged logout
                    // is never lost. Otherwise the client is told, and may log in again.
                    let not_saved = |message: &str, retry_after_ms| {
                        ControlS2c::Error(ErrorS2c {
                            code: ErrorCode::Internal,
                            message: message.into(),
                            retry_after_ms: Some(retry_after_ms),
                        })
                    };
                    let answer = match tokio::time::timeout(LOGOUT_SAVE_TIMEOUT, saved).await {
                        Ok(Ok(Ok(()))) => ControlS2c::Bye,
                        // The store is down: the save stays pending and is written when
                        // it is back, but the client is not told it is durable.
                        Err(_) => not_saved("logout not yet saved (store unavailable)", 5_000),
                        Ok(Ok(Err(e))) => {
                            tracing::error!(session, %player, error = %e, "logout not saved");
                            not_saved("logout could not be saved", 1_000)
                        }
                        Ok(Err(_)) => not_saved("node stopping", 1_000),
                    };
                    let durable = matches!(answer, ControlS2c::Bye);
                    let _ = write_frame(&mut send, &answer).await;
                    let _ = send.finish();
                    // Free for a login elsewhere once its state is durable (otherwise the
                    // key lapses, LOCATION_TTL: that login must not load an older save).
                    if durable && let Some(cluster) = node.cluster() {
                        cluster.release(player, session);
                    }
                    close_gracefully(&connection, close_code::NORMAL, b"bye").await;
                    return SessionEnd::LoggedOut;
                }
                Some(Ok(ControlC2s::Hello(_))) => break SessionEnd::Violation("second Hello".into()),
                Some(Ok(
                    request @ (ControlC2s::Chat(_)
                    | ControlC2s::Command(_)
                    | ControlC2s::GetLeaderboard(_)),
                )) => {
                    let started = chat_requests.start(request, session, &node);
                    let economy_answers = started
                        .economy
                        .map(|request| economy.start(request, player, session, &node))
                        .unwrap_or_default();
                    for answer in started.answers.into_iter().chain(economy_answers) {
                        if write_frame(&mut send, &answer).await.is_err() {
                            break 'session SessionEnd::Disconnected;
                        }
                    }
                }
                Some(Ok(request)) => {
                    for answer in economy.start(request, player, session, &node) {
                        if write_frame(&mut send, &answer).await.is_err() {
                            break 'session SessionEnd::Disconnected;
                        }
                    }
                }
                Some(Err(FrameError::Closed(_))) | None => break SessionEnd::Disconnected,
                Some(Err(e)) => break SessionEnd::Violation(e.to_string()),
            },
            out = outbox_rx.recv() => match out {
                Some(Outgoing::Datagram(bytes))
                    if bytes.len() > connection.max_datagram_size().unwrap_or(0) =>
                {
                    // Larger than this connection's datagrams can be now (the peer's
                    // limit or the path's MTU): a stream carries it, as any large state.
                    send_state_on_stream(&connection, bytes, &state_streams, &stats);
                }
                Some(Outgoing::Datagram(bytes)) => {
                    // Errors mean the peer cannot take datagrams now: the state is lost,
                    // and the next one (a delta against the client's ack) makes up for it.
                    let len = bytes.len() as u64;
                    if connection.send_datagram(bytes).is_ok() {
                        stats.datagrams_out.fetch_add(1, Ordering::Relaxed);
                        stats.payload_bytes_out.fetch_add(len, Ordering::Relaxed);
                    }
                }
                Some(Outgoing::Stream(bytes)) => {
                    send_state_on_stream(&connection, bytes, &state_streams, &stats);
                }
                Some(Outgoing::Control(message)) => {
                    if write_frame(&mut send, &*message).await.is_err() {
                        break SessionEnd::Disconnected;
                    }
                }
                Some(Outgoing::Redirect { addr, region }) => {
                    let ticket = auth
                        .tickets
                        .issue(ticket(TicketKind::Redirect, Some(region)), unix_now_s());
                    let redirect = ControlS2c::Redirect(RedirectS2c { addr, ticket });
                    end_with(&connection, &mut send, &redirect, close_code::REDIRECTED, b"redirected")
                        .await;
                    return SessionEnd::Redirected;
                }
                Some(Outgoing::Kick(kicked)) => {
                    // The control stream's reader lives until the close: dropped, it would
                    // stop the client's side, and a request the client writes meanwhile
                    // would fail before it read this frame (and it would resume).
                    // Not released: the avatar's final save may still be on its way (an
                    // admin kick), so the key lapses instead (LOCATION_TTL); a takeover's
                    // newer claim holds it anyway.
                    let kicked = ControlS2c::Kicked(kicked);
                    end_with(&connection, &mut send, &kicked, close_code::TAKEN_OVER, b"taken over")
                        .await;
                    return SessionEnd::TakenOver;
                }
                None => break SessionEnd::Disconnected,
            },
        }
    };
    drop(control);
    if end == SessionEnd::Disconnected {
        // Not a logout: the client may come back with its resume ticket.
        detach(&node, player, session).await;
        return end;
    }
    if let SessionEnd::Violation(reason) = &end {
        stats.violations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(session, %player, %reason, "disconnecting a client that broke the protocol");
        let kicked = ControlS2c::Kicked(KickedS2c {
            reason: KickReason::ProtocolViolation,
            message: reason.chars().take(200).collect(),
        });
        close_after_final_frame(&connection, send, &kicked).await;
    }
    match node.cluster() {
        // The location is released once the avatar is out and saved: a login elsewhere
        // then starts from this state.
        Some(cluster) => {
            let (done, saved) = oneshot::channel();
            leave(&node, player, session, Some(done)).await;
            if let Ok(Ok(Ok(()))) = tokio::time::timeout(LOGOUT_SAVE_TIMEOUT, saved).await {
                cluster.release(player, session);
            }
        }
        None => leave(&node, player, session, None).await,
    }
    end
}

/// The login of an authenticated `player`: its ban checked, its location claimed (in a
/// cluster), its last save loaded, and its avatar joined by the driver. `Err` is the
/// refusal to send.
async fn log_in(
    node: &NodeHandle,
    players: &Players,
    stats: &EndpointStats,
    player: tessera_shared::ids::PlayerId,
    session: u64,
    (name, arriving, start): (
        String,
        Option<tessera_shared::ids::RegionId>,
        Option<tessera_shared::ids::RegionId>,
    ),
    outbox: SessionOutbox,
) -> Result<crate::node::Joined, ErrorS2c> {
    // A banned player is told why, and until when.
    let now = unix_now_s();
    match players.sanction(Sanction::Ban, player, now).await {
        Ok(None) => {}
        Ok(Some(ban)) => {
            let until = match ban.until_unix_s {
                Some(until) => format!(" (for {} more seconds)", until.saturating_sub(now)),
                None => String::new(),
            };
            return Err(refusal(
                ErrorCode::Banned,
                &format!("banned: {}{until}", ban.reason),
            ));
        }
        Err(e) => {
            tracing::warn!(session, %player, error = %e, "ban could not be checked");
            return Err(unavailable("player state unavailable, retry"));
        }
    }
    // One node at a time: in a cluster the login claims the player's location first. The
    // claim stays this session's once it joined; dropped before (the client left), it is
    // put right.
    let claimed = match node.cluster() {
        None => None,
        Some(cluster) => match cluster.claim(player, session, arriving.is_some()).await {
            Ok(claimed) => Some(claimed),
            Err(LoginRefusal::Elsewhere { node: holder, ttl }) => {
                stats.logins_held_elsewhere.fetch_add(1, Ordering::Relaxed);
                tracing::info!(session, %player, %holder, "login refused: the player is on another node");
                let retry_after = ttl.clamp(Duration::from_secs(1), LOCATION_TTL);
                return Err(ErrorS2c {
                    code: ErrorCode::RegionUnavailable,
                    message: format!(
                        "the player is in the world on node {holder}: log in there, or retry once it has left"
                    ),
                    retry_after_ms: Some(
                        u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX),
                    ),
                });
            }
            Err(LoginRefusal::Unavailable(e)) => {
                tracing::warn!(session, %player, error = %e, "player location could not be claimed");
                return Err(unavailable("player location unavailable, retry"));
            }
        },
    };
    // The player continues where its last session ended. An unreadable save refuses the
    // login rather than resetting the player's progress.
    let saved = match players.load(player).await {
        Ok(saved) => saved,
        Err(e) => {
            tracing::warn!(session, %player, error = %e, "player state could not be loaded");
            return Err(unavailable("player state unavailable, retry"));
        }
    };
    let (reply, joined) = oneshot::channel();
    let join = Command::Join {
        player,
        name,
        session,
        outbox,
        saved,
        arriving,
        start,
        reply,
    };
    if node.try_send(join).is_err() {
        return Err(refusal(ErrorCode::ServerFull, "node busy, retry"));
    }
    let joined = match joined.await {
        Ok(joined) => joined,
        Err(_) => Err(refusal(ErrorCode::Internal, "node stopping")),
    };
    if joined.is_ok()
        && let Some(claimed) = claimed
    {
        claimed.joined();
    }
    joined
}

fn decode_input(bytes: &[u8]) -> Result<InputC2s, DecodeError> {
    let input: InputC2s = codec::decode_datagram(bytes)?;
    if input.frames.is_empty() || input.frames.len() > INPUT_FRAMES_MAX {
        return Err(DecodeError::TooMany {
            max: INPUT_FRAMES_MAX,
        });
    }
    Ok(input)
}

async fn leave(
    node: &NodeHandle,
    player: tessera_shared::ids::PlayerId,
    session: u64,
    reply: Option<SaveReply>,
) {
    deliver(
        node,
        Command::Leave {
            player,
            session,
            reply,
        },
    )
    .await;
}

async fn detach(node: &NodeHandle, player: tessera_shared::ids::PlayerId, session: u64) {
    deliver(node, Command::Detach { player, session }).await;
}

/// Queues a command that must not be lost (a logout, a detach). If the node is saturated
/// it is retried for up to a second once the channel has room; waiting must not block a
/// runtime worker.
async fn deliver(node: &NodeHandle, mut command: Command) {
    for _ in 0..100 {
        match node.try_send(command) {
            Ok(()) => return,
            Err(back) => {
                command = back;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::error!(?command, "node saturated: command not delivered");
}

async fn refuse(
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: ErrorCode,
    message: &str,
) -> SessionEnd {
    let error = refusal(code, message);
    refuse_with(connection, send, code, &error.message, error.retry_after_ms).await
}

/// A login refusal with `code`; the passing ones (a full node, a rate limit) say when to
/// retry.
fn refusal(code: ErrorCode, message: &str) -> ErrorS2c {
    let retry_after_ms = matches!(code, ErrorCode::ServerFull | ErrorCode::RateLimited)
        .then_some(LOGIN_RETRY_AFTER_MS);
    ErrorS2c {
        code,
        message: message.chars().take(200).collect(),
        retry_after_ms,
    }
}

/// A login refusal for a dependency that did not answer (the store, Redis): the client
/// may retry in a second.
fn unavailable(message: &str) -> ErrorS2c {
    ErrorS2c {
        code: ErrorCode::RegionUnavailable,
        message: message.into(),
        retry_after_ms: Some(LOGIN_RETRY_AFTER_MS),
    }
}

/// Refuses the login with `code`, telling the client when to retry.
async fn refuse_with(
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: ErrorCode,
    message: &str,
    retry_after_ms: Option<u32>,
) -> SessionEnd {
    let error = ControlS2c::Error(ErrorS2c {
        code,
        message: message.chars().take(200).collect(),
        retry_after_ms,
    });
    end_with(connection, send, &error, close_code::REFUSED, b"refused").await;
    SessionEnd::Refused(code)
}

/// A client broke the protocol before logging in (a first frame that is no `Hello`, does
/// not decode, or announces more than a frame may hold): `Error { Malformed }`, then close
/// code 4.
async fn violation_before_login(
    connection: &quinn::Connection,
    send: quinn::SendStream,
    stats: &EndpointStats,
    reason: &str,
) -> SessionEnd {
    stats.violations.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%reason, "disconnecting a client that broke the protocol before login");
    let error = ControlS2c::Error(refusal(ErrorCode::Malformed, reason));
    close_after_final_frame(connection, send, &error).await;
    SessionEnd::Violation(reason.into())
}

/// Sends `last` on the control stream, finishes it, and closes with code 4 once the client
/// acknowledged it (at most [`VIOLATION_CLOSE_GRACE`] later): `Connection::close` would
/// discard a frame still in flight.
async fn close_after_final_frame(
    connection: &quinn::Connection,
    mut send: quinn::SendStream,
    last: &ControlS2c,
) {
    let delivered = async {
        if write_frame(&mut send, last).await.is_ok() && send.finish().is_ok() {
            let _ = send.stopped().await;
        }
    };
    let _ = tokio::time::timeout(VIOLATION_CLOSE_GRACE, delivered).await;
    connection.close(close_code::PROTOCOL_VIOLATION.into(), b"protocol violation");
}

/// Sends a state too large for a datagram on a unidirectional stream of its own, if the
/// connection has fewer than [`STATE_STREAMS_IN_FLIGHT_MAX`] not yet acknowledged;
/// otherwise drops it (counted).
fn send_state_on_stream(
    connection: &quinn::Connection,
    bytes: bytes::Bytes,
    in_flight: &Arc<Semaphore>,
    stats: &EndpointStats,
) {
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        stats.state_streams_busy.fetch_add(1, Ordering::Relaxed);
        return;
    };
    stats
        .payload_bytes_out
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let connection = connection.clone();
    tokio::spawn(async move {
        if let Ok(mut uni) = connection.open_uni().await
            && uni.write_all(&bytes).await.is_ok()
            && uni.finish().is_ok()
        {
            // Until the client has it all (or the connection ends): quinn keeps the
            // bytes until then.
            let _ = uni.stopped().await;
        }
        drop(permit);
    });
}

/// Sends `last`, the session's final frame, finishes the control stream and closes
/// gracefully with `code`.
async fn end_with(
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    last: &ControlS2c,
    code: u32,
    reason: &[u8],
) {
    let _ = write_frame(send, last).await;
    let _ = send.finish();
    close_gracefully(connection, code, reason).await;
}

/// Waits (at most [`CLOSE_GRACE`]) for the client to close after reading our last frame,
/// then closes: `Connection::close` discards data not yet delivered.
async fn close_gracefully(connection: &quinn::Connection, code: u32, reason: &[u8]) {
    let _ = tokio::time::timeout(CLOSE_GRACE, connection.closed()).await;
    connection.close(code.into(), reason);
}
