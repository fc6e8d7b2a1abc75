//! What reaches the driver (a [`Command`] on its one bounded channel, through a
//! [`NodeHandle`]) and what leaves it for a session ([`Outgoing`]).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use tessera_regions::Region;
use tessera_regions::io::SavedPlayer;
use tessera_shared::config::Config;
use tessera_shared::ids::{PlayerId, RegionId};
use tessera_shared::math::Vec2;
use tessera_shared::protocol::messages::{ChatS2c, ControlS2c, ErrorS2c, InputC2s, KickedS2c};
use tokio::sync::oneshot;

use crate::cluster::ClusterHandle;
use crate::players::SaveReply;

/// How long an operator's request waits for the driver's answer.
pub const DRIVER_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A session's or an operator's request to the driver.
#[derive(Debug)]
pub enum Command {
    /// Log `player` in on `session`.
    Join {
        /// The player.
        player: PlayerId,
        /// The session's id, unique per node run.
        session: u64,
        /// Where the driver sends this session's states and events.
        outbox: super::SessionOutbox,
        /// Its display name (for the player directory).
        name: String,
        /// The player's last save (the avatar appears there, in the region holding it).
        saved: Option<SavedPlayer>,
        /// For a login with a redirect ticket: the region the player was handed off to.
        /// Its avatar may still be in flight: the login waits for it (up to
        /// [`super::ARRIVAL_WAIT`]) rather than creating a second one from the save.
        arriving: Option<RegionId>,
        /// Where the player starts if it has no save (its token's `region` claim), when
        /// that region is held here.
        start: Option<RegionId>,
        /// The answer: where the player is, or why not. A login whose session left
        /// (this closed) is skipped.
        reply: oneshot::Sender<Result<Joined, ErrorS2c>>,
    },
    /// Log `player` out of `session` (ignored if another session holds the player now).
    Leave {
        /// The player.
        player: PlayerId,
        /// The session asking.
        session: u64,
        /// Answered once the player's final state is out of the world and saved (with
        /// the save's outcome; `Ok` at once where the node saves no players).
        reply: Option<SaveReply>,
    },
    /// `session`'s connection dropped without a logout: the avatar stays in the world
    /// for [`super::RESUME_LINGER`], for the client to resume with its ticket.
    Detach {
        /// The player.
        player: PlayerId,
        /// The session whose connection dropped.
        session: u64,
    },
    /// Send `player` to another node: its session gets a `Redirect` to `addr` and ends,
    /// and the avatar leaves this node's world.
    Redirect {
        /// The player.
        player: PlayerId,
        /// `host:port` of the node that takes the player.
        addr: String,
        /// The region it will be in there.
        region: RegionId,
    },
    /// An input datagram from `session`.
    Input {
        /// The player.
        player: PlayerId,
        /// The session it came on.
        session: u64,
        /// The decoded input.
        input: InputC2s,
    },
    /// An economy transaction a session asked for (a purchase, a refund): committed under
    /// the balance in force, answered through `reply`. Refused (`Unavailable`) unless
    /// `session` holds `tx.player` here.
    Economy {
        /// The session asking.
        session: u64,
        /// The transaction (its player is the session's); boxed, so that commands stay
        /// small in the driver's preallocated channel.
        tx: Box<tessera_persistence::economy::EconomyTx>,
        /// The outcome.
        reply: crate::economy::TxReply,
    },
    /// A control message for `player`'s session, if it is on this node (a trade offered
    /// to it); dropped otherwise, or if its outbox is full.
    Notify {
        /// The player.
        player: PlayerId,
        /// The message (boxed: commands stay small).
        message: Box<ControlS2c>,
    },
    /// A chat message of `from` (on `session`) to the players of its region: those within
    /// `radius_m` of it (`say`), or all of them (`None`: region). Answered with how many
    /// it reached, the sender included; `None` if `session` does not hold `from` here.
    Chat {
        /// The sender.
        from: PlayerId,
        /// Its session.
        session: u64,
        /// How far it carries; `None`: the whole region.
        radius_m: Option<f32>,
        /// The message (boxed: commands stay small).
        message: Box<ChatS2c>,
        /// How many players it reached.
        reply: oneshot::Sender<Option<usize>>,
    },
    /// A message of the cluster's chat: a global one for every player here, a whisper
    /// for its recipient if here. Answered (if asked) with whether it reached anyone.
    DeliverChat {
        /// The message (boxed: commands stay small).
        message: Box<ChatS2c>,
        /// Whether it reached anyone.
        reply: Option<oneshot::Sender<bool>>,
    },
    /// Who is in `player`'s region (`/who`); `None` if the player is not here.
    Who {
        /// The player asking.
        player: PlayerId,
        /// The answer.
        reply: oneshot::Sender<Option<WhoList>>,
    },
    /// An operator's request, carried out at the next tick boundary.
    Admin {
        /// What to do.
        action: AdminAction,
        /// The outcome (JSON for the API's answer).
        reply: oneshot::Sender<ActionResult>,
    },
}

/// The players of a region (`/who`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoList {
    /// The region.
    pub region: RegionId,
    /// The first [`tessera_shared::protocol::limits::WHO_PLAYERS_MAX`] of its players, by
    /// id.
    pub players: Vec<PlayerId>,
    /// How many players it holds.
    pub region_total: usize,
    /// How many players this node holds.
    pub node_total: usize,
}

/// What an operator's request comes to: JSON for the API's answer, or why not.
pub type ActionResult = Result<serde_json::Value, ActionError>;

/// Why the node did not do what it was asked (the admin API maps each to its HTTP status).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// What it names does not exist here.
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with what the node is doing or holds.
    #[error("{0}")]
    Conflict(String),
    /// Well formed, but it cannot be carried out (a target outside the region, a
    /// snapshot that does not rebuild).
    #[error("{0}")]
    Unprocessable(String),
    /// Not now (the node is busy, a dependency is down): retry after `retry_after_s`.
    #[error("{message}")]
    Unavailable {
        /// What is unavailable.
        message: String,
        /// When to retry, in seconds.
        retry_after_s: u32,
    },
}

impl ActionError {
    /// [`ActionError::Unavailable`].
    pub fn unavailable(message: impl Into<String>, retry_after_s: u32) -> Self {
        ActionError::Unavailable {
            message: message.into(),
            retry_after_s,
        }
    }
}

/// What an operator can have the driver do.
#[derive(Debug)]
pub enum AdminAction {
    /// End the player's session with `Kicked { Admin, reason }`; the avatar leaves as on
    /// a logout (its state saved).
    Kick {
        /// The player.
        player: PlayerId,
        /// Shown to the player.
        reason: String,
    },
    /// Move the player's avatar to `to` within its region at the next tick (a
    /// server-side displacement: exempt from the speed check).
    Teleport {
        /// The player.
        player: PlayerId,
        /// Where to; must be inside the player's region.
        to: Vec2,
    },
    /// Move the player's avatar to a safe spot around its region's spawn point at the next
    /// tick (`node::emergency::safe_spot`).
    Rescue {
        /// The player.
        player: PlayerId,
    },
    /// Send the player an operators' message (`EventS2c::Message`).
    Message {
        /// The player.
        player: PlayerId,
        /// The text (at most `TEXT_BYTES_MAX` bytes).
        text: String,
    },
    /// Freeze `region` (an emergency): it keeps ticking, its players' inputs are ignored
    /// (`DriverCounters::inputs_frozen`), and they are told why; idempotent (a second
    /// freeze replaces the reason).
    Freeze {
        /// The region (held here).
        region: RegionId,
        /// Told to its players.
        reason: String,
    },
    /// Unfreeze `region`: inputs count again; its players are told.
    Unfreeze {
        /// The region (frozen here).
        region: RegionId,
    },
    /// Move every player of `from` to safe spots around `to`'s spawn point (handed off
    /// like a border crossing: to a region held elsewhere, the clients are redirected);
    /// each is told why.
    Evacuate {
        /// The region emptied (held here).
        from: RegionId,
        /// Where they go (another region of the world).
        to: RegionId,
        /// Told to the players.
        reason: String,
    },
    /// End every session on this node with `Kicked { Admin, reason }` (their avatars
    /// leave as on a logout, saved).
    KickAll {
        /// Shown to the players.
        reason: String,
    },
    /// Run on `config` (a new balance) from the next tick on.
    Reload {
        /// The running config with the new balance.
        config: Arc<Config>,
    },
    /// Start stepping `region` (restored or new; built off the tick's thread, its
    /// snapshot encoder already with the writer).
    Assign {
        /// The region.
        region: Box<Region>,
    },
    /// Stop stepping `region` after the next tick: its players are handed off into it
    /// for its next holder and redirected there (`transfer`), or leave, saved, with their
    /// sessions told why; then its final capture goes to the snapshot writer. Answered
    /// once the region is out (`final_tick`, `players`).
    Release {
        /// The region.
        region: RegionId,
        /// Hand the players over (a transfer) rather than let them go.
        transfer: bool,
    },
}

/// Where a login landed.
#[derive(Clone, Copy, Debug)]
pub struct Joined {
    /// The region holding the avatar.
    pub region: RegionId,
    /// The tick at which it appeared.
    pub tick: u64,
}

/// What the driver sends a session.
#[derive(Debug)]
pub enum Outgoing {
    /// A state that fits a datagram.
    Datagram(bytes::Bytes),
    /// A state too large for a datagram: send it on a unidirectional stream.
    Stream(bytes::Bytes),
    /// A control message (boxed: rare, and large next to a state's `Bytes`, which would
    /// make every slot of every session's outbox that large).
    Control(Box<ControlS2c>),
    /// End the session with this message (another session took the player over).
    Kick(KickedS2c),
    /// End the session with a `Redirect` to `addr` (the session mints the ticket).
    Redirect {
        /// `host:port` of the node that takes the player.
        addr: String,
        /// The region it will be in there.
        region: RegionId,
    },
}

/// The sending side, cloned into every session, the admin API and the services.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    pub(super) commands: Sender<Command>,
    pub(super) tick_hz: u32,
    /// Archetype names by number, for `Welcome`.
    pub(super) archetypes: Arc<[String]>,
    /// The cluster's side for sessions (none: a node on its own).
    pub(super) cluster: Option<ClusterHandle>,
    /// Operators' recent kicks, recorded by the driver: logins refuse the kicked
    /// sessions' resume tickets.
    pub(super) kicks: Arc<crate::auth::Kicks>,
}

impl NodeHandle {
    /// The cluster's side for sessions (none: a node on its own, whose driver alone
    /// decides where a player is).
    pub fn cluster(&self) -> Option<&ClusterHandle> {
        self.cluster.as_ref()
    }

    /// Operators' recent kicks: a resume ticket of a kicked session is answered with its
    /// kick (PROTOCOL.md section 6 rule 7).
    pub fn kicks(&self) -> &crate::auth::Kicks {
        &self.kicks
    }

    /// The node's tick rate.
    pub fn tick_hz(&self) -> u32 {
        self.tick_hz
    }

    /// Archetype names by archetype number (fixed while the node runs: a balance reload
    /// may not change them).
    pub fn archetypes(&self) -> &[String] {
        &self.archetypes
    }

    /// Queues `command`; `Err` if the node is saturated (the caller refuses or drops).
    pub fn try_send(&self, command: Command) -> Result<(), Command> {
        self.commands.try_send(command).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }

    /// Has the driver carry `action` out at its next tick boundary and waits for the
    /// outcome (at most [`DRIVER_REPLY_TIMEOUT`]).
    pub async fn ask(&self, action: AdminAction) -> ActionResult {
        let (reply, answer) = oneshot::channel();
        self.try_send(Command::Admin { action, reply })
            .map_err(|_| ActionError::unavailable("the node is saturated; retry", 1))?;
        match tokio::time::timeout(DRIVER_REPLY_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ActionError::unavailable("the node is stopping", 5)),
            Err(_) => Err(ActionError::unavailable(
                "the tick driver did not answer in time",
                1,
            )),
        }
    }
}
