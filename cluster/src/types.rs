//! The vocabulary the cluster's stores and this crate's [`crate::Ledger`] share: a region
//! [`Lease`], a player's [`Move`] between regions, and the outcome of a location
//! [`Claim`]. The stores (`tessera-persistence`: Redis and in-process) implement the
//! operations; these are only the values they exchange.

use std::time::{Duration, Instant};

use tessera_shared::ids::{HandoffId, PlayerId, RegionId};

/// How long before a lease's deadline (by the holder's clock) the holder stops.
pub const STOP_MARGIN: Duration = Duration::from_millis(200);

/// A held region lease (see `tessera_persistence::lease`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The region.
    pub region: RegionId,
    /// The holder (a node id).
    pub holder: String,
    /// The fencing epoch of this holding: greater than every earlier one of the region.
    pub epoch: u64,
    /// The lease's length.
    pub ttl: Duration,
    /// When the last successful acquire or renew was sent (holder's clock).
    pub sent_at: Instant,
}

impl Lease {
    /// The holder's deadline: the lease cannot have expired in the store before it.
    pub fn valid_until(&self) -> Instant {
        self.sent_at + self.ttl
    }

    /// Whether the holder must stop simulating the region now.
    pub fn must_stop(&self, now: Instant) -> bool {
        now + STOP_MARGIN >= self.valid_until()
    }

    /// When the next renew is due: a third of the way, so two can fail before stopping.
    pub fn renew_due(&self) -> Instant {
        self.sent_at + self.ttl / 3
    }
}

/// One handoff of a player, as the location keys know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Move {
    /// The player.
    pub player: PlayerId,
    /// The region it leaves.
    pub from: RegionId,
    /// The region it is handed to.
    pub to: RegionId,
    /// The handoff's id.
    pub handoff: HandoffId,
}

impl Move {
    /// The location key's value while the avatar is in flight: `@<region>|0|<handoff>`.
    pub fn in_flight(&self) -> String {
        format!("@{}|0|{}", self.to.0, self.handoff.0)
    }
}

/// The outcome of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The player's key names this node and claim now.
    Claimed,
    /// The player is on its way to `region`, which this node holds: its avatar arrives
    /// here (claim again once it has).
    Arriving {
        /// The region.
        region: RegionId,
    },
    /// Another live node holds the player (or the region it is on its way to); the key
    /// lapses in `ttl` unless refreshed.
    HeldBy {
        /// The holding node.
        node: String,
        /// What is left of the key's TTL.
        ttl: Duration,
    },
}
