//! The [`Ledger`]: every piece of a node's cluster state, in one place, changed only by
//! its methods.
//!
//! - **Regions** (`regions.rs`): the leases held, whether the driver steps each region,
//!   when each renew is due and when the node must stop ([`Lease::must_stop`]); the
//!   directory of the regions held elsewhere and their nodes' addresses.
//! - **Players** (`players.rs`): which players have an avatar here and under which claim of
//!   their location key; logins claiming a player; and every write to a player's key
//!   (claim, hand over, adopt, release), issued **one at a time per player** from a queue,
//!   so that on one node those writes happen in the order the node decided them.
//! - **Handoffs** (`handoffs.rs`): departures (a player's key handed to the destination
//!   region, then its mail published; the player is *moving* meanwhile), the redirects
//!   waiting for them, arrivals (received, checked against the player's key, applied by a
//!   region, then acknowledged and adopted) and logins waiting for an arrival.
//!
//! Every method that can start IO takes `now`; nothing reads a clock. Actions leave
//! through [`Ledger::poll_io`], [`Ledger::poll_driver`] and [`Ledger::poll_login`];
//! answers come back through [`Ledger::handle`], matched by their [`OpId`]. An answer for
//! an operation the ledger no longer waits for is ignored.

mod handoffs;
mod players;
mod regions;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tessera_regions::io::HandoffRecord;
use tessera_shared::ids::{HandoffId, PlayerId, RegionId};

use crate::types::{Claim, Lease, Move};

/// Identifies an IO operation, to match its [`Answer`].
pub type OpId = u64;
/// Identifies a login, to match its outcome.
pub type LoginId = u64;

/// Received handoffs the ledger holds at once: being checked, waiting for the driver, or in
/// the regions' inputs (a region may defer them). The node reads no more from the bus.
pub const HANDOFFS_IN_LEN_MAX: usize = 8_192;
/// Most mail one poll of one region's handoffs asks for.
pub const RECEIVE_MAX: usize = 1_024;
/// Most handoffs one publish carries.
pub const PUBLISH_BATCH_MAX: usize = 1_024;
/// Departures the ledger holds at once (handed over, published, or waiting to be); beyond
/// it [`Ledger::has_room_to_depart`] is false and the driver keeps them.
pub const DEPARTURES_MAX: usize = 8_192;
/// Logins claiming their player at once; beyond it a login is refused as unavailable.
pub const LOGINS_MAX: usize = 16_384;
/// Location writes queued per player (a login storm on one player is refused beyond it).
pub const PLAYER_OPS_MAX: usize = 16;

/// The ledger's durations. [`Timing::default`] is the production set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often the directory of other nodes' regions is read.
    pub directory_refresh: Duration,
    /// How often the held regions' mail is polled.
    pub receive_poll: Duration,
    /// How often the location keys of the players here are extended.
    pub location_refresh: Duration,
    /// How often the node advertises its address (a node that stops is not live after its
    /// advertisement's TTL).
    pub advertise_every: Duration,
    /// How long an advertisement lasts. The node steps no region past its last one (from
    /// when it was sent, less `STOP_MARGIN`), as past its lease: while it steps a region,
    /// no other node may take its players.
    pub address_ttl: Duration,
    /// How long a redirected login waits for its avatar's handoff to arrive, and a login
    /// finding its player on its way here waits for the key to come here.
    pub arrival_wait: Duration,
    /// First and longest wait between two claims of a login that waits.
    pub claim_poll_min: Duration,
    /// See `claim_poll_min`.
    pub claim_poll_max: Duration,
    /// First and longest wait before an IO operation that failed is tried again (publish,
    /// hand over, adopt), doubling, with jitter.
    pub retry_min: Duration,
    /// See `retry_min`.
    pub retry_max: Duration,
    /// Wait before a failed lease renew is tried again (until the lease's own deadline).
    pub renew_retry: Duration,
    /// Wait before mail refused by a full lane is published again.
    pub lane_full_retry: Duration,
}

impl Timing {
    /// The production set.
    pub const DEFAULT: Timing = Timing {
        directory_refresh: Duration::from_millis(250),
        receive_poll: Duration::from_millis(10),
        location_refresh: Duration::from_secs(5),
        advertise_every: Duration::from_secs(1),
        address_ttl: Duration::from_secs(6),
        arrival_wait: Duration::from_secs(10),
        claim_poll_min: Duration::from_millis(25),
        claim_poll_max: Duration::from_millis(400),
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_secs(2),
        renew_retry: Duration::from_millis(100),
        lane_full_retry: Duration::from_millis(100),
    };
}

impl Default for Timing {
    fn default() -> Self {
        Timing::DEFAULT
    }
}

/// Mail for the bus: a handoff into `to`, keyed by its handoff id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutMail {
    /// The receiving region.
    pub to: RegionId,
    /// The idempotency key.
    pub key: String,
    /// The encoded [`HandoffRecord`].
    pub payload: Vec<u8>,
}

/// Mail the bus delivered: its payload and the delivery `D` to acknowledge.
#[derive(Clone, Debug)]
pub struct Inbound<D> {
    /// The payload (an encoded handoff, if it is well formed).
    pub payload: Vec<u8>,
    /// The delivery, handed back in [`IoAction::Ack`].
    pub delivery: D,
}

/// A store or bus operation for the IO glue to carry out. Those with an `op` are answered
/// with the [`Answer`] of that id; the others need no answer.
#[derive(Debug)]
pub enum IoAction<D> {
    /// Claim `player`'s location key for this node's `claim`. Answer: [`Answer::Claim`].
    Claim {
        /// The operation.
        op: OpId,
        /// The player.
        player: PlayerId,
        /// The claim (a session id; `0` for an avatar that arrived by handoff).
        claim: u64,
    },
    /// Hand the keys of `moves` to their destination regions, each from the claim given
    /// (`None`: any claim of this node). `first`: no earlier attempt of these was made, so
    /// an absent key may be taken. Answer: [`Answer::HandOver`].
    HandOver {
        /// The operation.
        op: OpId,
        /// The moves, with the claim each avatar had.
        moves: Vec<(Move, Option<u64>)>,
        /// Whether this is each move's first attempt.
        first: bool,
    },
    /// Publish `mail` on the bus (high lane). Answer: [`Answer::Publish`].
    Publish {
        /// The operation.
        op: OpId,
        /// The mail, in order.
        mail: Vec<OutMail>,
    },
    /// Read up to `max` new or reclaimable deliveries of `region`'s mail. Answer:
    /// [`Answer::Receive`].
    Receive {
        /// The operation.
        op: OpId,
        /// The region.
        region: RegionId,
        /// At most this many.
        max: usize,
    },
    /// Whether each of `moves` is its player's latest move (see the location store's
    /// `accepts`). Answer: [`Answer::Accepts`].
    Accepts {
        /// The operation.
        op: OpId,
        /// The moves received.
        moves: Vec<Move>,
    },
    /// Acknowledge `deliveries` of `region`'s mail (done with: never delivered again).
    Ack {
        /// The region.
        region: RegionId,
        /// The deliveries.
        deliveries: Vec<D>,
    },
    /// The avatar of `m` arrived here: its key becomes this node's. Answer:
    /// [`Answer::Adopt`].
    Adopt {
        /// The operation.
        op: OpId,
        /// The move.
        m: Move,
    },
    /// Release this node's claim `claim` of `player`'s key (deleted only if it is still
    /// exactly that claim). Answer: [`Answer::Done`].
    Release {
        /// The operation.
        op: OpId,
        /// The player.
        player: PlayerId,
        /// The claim.
        claim: u64,
    },
    /// Extend the keys of `players` (they are here) and of `in_flight` (handoffs received
    /// and deferred by a region). Answer: [`Answer::Done`].
    Refresh {
        /// The operation.
        op: OpId,
        /// The players with an avatar here.
        players: Vec<PlayerId>,
        /// The deferred handoffs' moves.
        in_flight: Vec<Move>,
    },
    /// Renew `lease`. Answer: [`Answer::Renew`].
    Renew {
        /// The operation.
        op: OpId,
        /// The lease.
        lease: Lease,
    },
    /// Give `lease` up (its region's state is durable elsewhere by now).
    ReleaseLease {
        /// The lease.
        lease: Lease,
    },
    /// Advertise this node's address for `ttl` (the node is live while it lasts: nobody
    /// else may claim its players). Answer: [`Answer::Done`].
    Advertise {
        /// The operation.
        op: OpId,
        /// How long the advertisement lasts.
        ttl: Duration,
    },
    /// Look up who holds each of `regions` and at which address. Answer:
    /// [`Answer::Directory`].
    Directory {
        /// The operation.
        op: OpId,
        /// The regions this node does not hold.
        regions: Vec<RegionId>,
    },
}

/// A failed operation (the store or bus did not answer, or refused the request): the
/// ledger retries or gives up as the operation's rules say.
pub type IoError = String;

/// The outcome of an [`IoAction`], by its [`OpId`].
#[derive(Debug)]
pub enum Answer<D> {
    /// Of [`IoAction::Claim`].
    Claim(OpId, Result<Claim, IoError>),
    /// Of [`IoAction::HandOver`]: for each move, whether it was handed over.
    HandOver(OpId, Result<Vec<bool>, IoError>),
    /// Of [`IoAction::Publish`]: the indices of mail refused (a full lane).
    Publish(OpId, Result<Vec<usize>, IoError>),
    /// Of [`IoAction::Receive`].
    Receive(OpId, Result<Vec<Inbound<D>>, IoError>),
    /// Of [`IoAction::Accepts`]: for each move, whether it is its player's latest.
    Accepts(OpId, Result<Vec<bool>, IoError>),
    /// Of [`IoAction::Adopt`]: whether the key was adopted (`false`: it moved on).
    Adopt(OpId, Result<bool, IoError>),
    /// Of [`IoAction::Renew`]: the renewed lease, `None` if it was lost.
    Renew(OpId, Result<Option<Lease>, IoError>),
    /// Of [`IoAction::Directory`]: the regions held elsewhere and their nodes' addresses.
    Directory(OpId, Result<Vec<(RegionId, String)>, IoError>),
    /// Of [`IoAction::Release`], [`IoAction::Refresh`] and [`IoAction::Advertise`].
    Done(OpId, Result<(), IoError>),
}

/// Why the ledger ends a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Its player's handoff did not go through in time (no address for the region it
    /// entered, or the bus or the location store is down).
    HandoffFailed,
    /// A newer login of the player claimed it while it crossed: the handoff was dropped.
    TakenOver,
}

/// What the tick driver is to do for a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverAction {
    /// Send `player`'s session a `Redirect` to `addr`: its handoff into `region` is
    /// durable.
    Redirect {
        /// The player.
        player: PlayerId,
        /// `host:port` of the node holding `region`.
        addr: String,
        /// The region the player is in there.
        region: RegionId,
    },
    /// End `player`'s redirected session.
    EndSession {
        /// The player.
        player: PlayerId,
        /// Why.
        why: SessionEnd,
    },
    /// The login of `session` waited for its player's arrival: join it now (onto the
    /// arrived avatar, or from its save if it did not arrive in time).
    JoinNow {
        /// The session.
        session: u64,
    },
}

/// Why a login could not claim its player.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Another live node holds the player; its key lapses in `ttl` at the latest.
    Elsewhere {
        /// The holder.
        node: String,
        /// What is left of its key.
        ttl: Duration,
    },
    /// The location store did not answer, or the player is still on its way here.
    Unavailable(String),
}

/// The outcome of a login's claim.
pub type LoginOutcome = Result<(), LoginRefusal>;

/// What the ledger counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Handoffs published to other nodes' regions.
    pub handoffs_out: u64,
    /// Handoffs into regions held here, applied (or found applied before) and acknowledged.
    pub handoffs_in: u64,
    /// Handoffs refused as stale: redelivered after their player moved on.
    pub handoffs_stale: u64,
    /// Mail that was not a handoff for its region (left for the dead letters).
    pub handoffs_malformed: u64,
    /// Handoffs dropped because a newer login claimed the player while it crossed.
    pub handoffs_dropped: u64,
    /// Players redirected to another node.
    pub redirects: u64,
    /// Redirected sessions ended because the handoff did not go through in time.
    pub redirects_failed: u64,
    /// Logins whose session left while they claimed the player.
    pub logins_abandoned: u64,
    /// Claims written for a session that left, put right (restamped or released).
    pub claims_repaired: u64,
    /// Leases lost (not renewed in time, or taken).
    pub leases_lost: u64,
}

/// One node's cluster state (see the module docs). `D` is the bus's delivery handle.
#[derive(Debug)]
pub struct Ledger<D> {
    node: String,
    world: Vec<RegionId>,
    timing: Timing,
    /// xorshift64 state: jitter of retry delays (seeded: replays are identical).
    rng: u64,
    next_op: OpId,
    regions: regions::Regions,
    players: players::Players,
    handoffs: handoffs::Handoffs<D>,
    io: VecDeque<IoAction<D>>,
    driver: VecDeque<DriverAction>,
    logins_done: VecDeque<(LoginId, LoginOutcome)>,
    stats: LedgerStats,
}

impl<D: Clone + std::fmt::Debug> Ledger<D> {
    /// The ledger of node `node` in a world of `world`'s regions, holding nothing yet.
    /// `seed` seeds the jitter of retries.
    pub fn new(node: &str, world: Vec<RegionId>, timing: Timing, seed: u64, now: Instant) -> Self {
        Ledger {
            node: node.to_owned(),
            world,
            timing,
            rng: seed | 1,
            next_op: 1,
            regions: regions::Regions::new(now),
            players: players::Players::default(),
            handoffs: handoffs::Handoffs::new(now),
            io: VecDeque::new(),
            driver: VecDeque::new(),
            logins_done: VecDeque::new(),
            stats: LedgerStats::default(),
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The ledger's durations.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// What it counted.
    pub fn stats(&self) -> LedgerStats {
        self.stats
    }

    /// The next IO operation to carry out.
    pub fn poll_io(&mut self) -> Option<IoAction<D>> {
        self.io.pop_front()
    }

    /// The next thing the tick driver is to do.
    pub fn poll_driver(&mut self) -> Option<DriverAction> {
        self.driver.pop_front()
    }

    /// The next login whose claim is decided.
    pub fn poll_login(&mut self) -> Option<(LoginId, LoginOutcome)> {
        self.logins_done.pop_front()
    }

    /// When [`Ledger::handle_timeout`] has something to do next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.regions.next_timeout(&self.timing),
            self.players.next_timeout(),
            self.handoffs.next_timeout(self.regions.has_active()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Starts what is due at `now`: renews, polls, refreshes, retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pump(now);
    }

    /// The answer of an operation.
    pub fn handle(&mut self, answer: Answer<D>, now: Instant) {
        match answer {
            Answer::Claim(op, result) => self.on_claim(op, result, now),
            Answer::HandOver(op, result) => self.on_hand_over(op, result, now),
            Answer::Publish(op, result) => self.on_publish(op, result, now),
            Answer::Receive(op, result) => self.on_receive(op, result),
            Answer::Accepts(op, result) => self.on_accepts(op, result),
            Answer::Adopt(op, result) => self.on_adopt(op, result, now),
            Answer::Renew(op, result) => self.on_renew(op, result, now),
            Answer::Directory(op, result) => self.on_directory(op, result),
            Answer::Done(op, result) => {
                self.players.done(op);
                self.handoffs.refresh_done(op);
                self.advertised(op, result.is_ok());
            }
        }
        self.pump(now);
    }

    /// Once per tick, before the regions step: leases past their deadline are lost,
    /// redirects and logins past their waits are settled.
    pub fn tick(&mut self, now: Instant) {
        self.expire_leases(now);
        self.settle_redirects(now);
        self.settle_awaiting(now);
        self.pump(now);
    }

    /// Emits every operation that is due and possible now.
    fn pump(&mut self, now: Instant) {
        self.pump_regions(now);
        self.pump_players(now);
        self.pump_handoffs(now);
    }

    fn op(&mut self) -> OpId {
        let op = self.next_op;
        self.next_op += 1;
        op
    }

    /// The `attempt`th retry delay (from 0): doubling from `retry_min` to `retry_max`,
    /// jittered down by up to half.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let t = &self.timing;
        let full = t
            .retry_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(t.retry_max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = full.as_nanos() as u64 / 2;
        let cut = if jitter == 0 { 0 } else { self.rng % jitter };
        full - Duration::from_nanos(cut)
    }
}

/// The move of a player's handoff, as the location keys know it (none: not a player).
pub fn move_of(record: &HandoffRecord) -> Option<Move> {
    record.entity.player.map(|player| Move {
        player,
        from: record.from,
        to: record.to,
        handoff: record.id,
    })
}

/// Ids of handoffs, sorted (for deterministic batches).
type HandoffIds = std::collections::BTreeSet<HandoffId>;

/// Players, sorted.
type PlayerMap<V> = BTreeMap<PlayerId, V>;

#[cfg(test)]
mod tests;
