//! Where each player is in a cluster: one Redis key per player naming the node that holds
//! its avatar, so that a player is in the world on one node at a time.
//!
//! The key `tessera:{p<id>}:node` holds `node|claim` (`claim` is the session that logged the
//! player in there, `0` for an avatar that arrived by handoff) with a TTL the holder keeps
//! extending ([`RedisLocations::refresh`]). It changes hands four ways:
//!
//! - **Claim** (a login): taken if absent, already this node's, or held by a node that is
//!   no longer live (its address advertisement lapsed: it crashed or stopped). Held by
//!   another live node, the claim fails and names it: the login is refused there.
//! - **Hand over** (a handoff to another node): from this node to the node now holding the
//!   destination region, after the handoff's mail is published.
//! - **Release** (a logout): deleted if it is still this exact claim, so that a release
//!   racing a newer login of the same player on the same node changes nothing.
//! - **Lapse**: a node that stops refreshing a key (the avatar left without a logout, or
//!   the node died) lets it expire after its TTL.
//!
//! Every operation is one Lua script on the player's key alone (Redis Cluster safe); the
//! liveness of the holding node is a separate read of its address key.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tessera_shared::ids::PlayerId;

use crate::lease::{LeaseError, node_key};

/// Players per pipelined round trip when refreshing or releasing many.
pub const PIPELINE_LEN_MAX: usize = 1_000;

/// Replaces the value if the current one is accepted. KEYS the player's key; ARGV new value
/// (empty: delete), ttl ms, accepted node prefix (`node|`, empty: none), accepted exact
/// value (empty: none), `1` if an absent key is accepted. Returns `{1, '', 0}` when done,
/// else `{0, current value or '', its PTTL}`.
const SWAP_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
local ok = false \
if v == false then ok = ARGV[5] == '1' \
else ok = (ARGV[3] ~= '' and string.sub(v, 1, #ARGV[3]) == ARGV[3]) \
or (ARGV[4] ~= '' and v == ARGV[4]) end \
if not ok then \
if v == false then return {0, '', 0} end \
return {0, v, redis.call('PTTL', KEYS[1])} end \
if ARGV[1] == '' then redis.call('DEL', KEYS[1]) \
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end \
return {1, '', 0}";

/// Extends the key's TTL if it names this node. KEYS the player's key; ARGV `node|`, ttl ms.
const REFRESH_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then \
return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

/// The outcome of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The player's key names this node and claim now.
    Claimed,
    /// Another live node holds the player; its key lapses in `ttl` unless refreshed.
    HeldBy {
        /// The holding node.
        node: String,
        /// What is left of the key's TTL.
        ttl: Duration,
    },
}

/// Player locations in Redis.
#[derive(Clone)]
pub struct RedisLocations {
    commands: ConnectionManager,
    ttl: Duration,
}

impl std::fmt::Debug for RedisLocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocations")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn location_key(player: PlayerId) -> String {
    format!("tessera:{{p{}}}:node", player.0)
}

fn unavailable(e: redis::RedisError) -> LeaseError {
    LeaseError::Unavailable(e.to_string())
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// One swap: see [`SWAP_SCRIPT`].
struct Swap<'a> {
    to: &'a str,
    prefix: &'a str,
    exact: &'a str,
    absent: bool,
}

/// What a swap found when it did not swap: the current value and its PTTL.
type Refusal = (String, i64);

impl RedisLocations {
    /// Locations over `commands` (a connection manager with response timeouts set, such as
    /// [`crate::redis_bus::connection`] makes); keys last `ttl` past their last refresh.
    pub fn new(commands: ConnectionManager, ttl: Duration) -> Self {
        RedisLocations { commands, ttl }
    }

    /// Connects to `url`, with the bus's timeouts.
    pub async fn connect(url: &str, ttl: Duration) -> Result<Self, LeaseError> {
        crate::redis_bus::connection(url)
            .await
            .map(|commands| RedisLocations::new(commands, ttl))
            .map_err(|e| LeaseError::Unavailable(e.to_string()))
    }

    fn swap_cmd(&self, player: PlayerId, swap: &Swap<'_>) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SWAP_SCRIPT)
            .arg(1)
            .arg(location_key(player))
            .arg(swap.to)
            .arg(ttl_ms(self.ttl))
            .arg(swap.prefix)
            .arg(swap.exact)
            .arg(if swap.absent { "1" } else { "0" });
        cmd
    }

    async fn swap(
        &self,
        player: PlayerId,
        swap: Swap<'_>,
    ) -> Result<Result<(), Refusal>, LeaseError> {
        let reply: (u8, String, i64) = self
            .swap_cmd(player, &swap)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(match reply {
            (1, _, _) => Ok(()),
            (_, value, pttl) => Err((value, pttl)),
        })
    }

    /// Whether `node` is live: its address advertisement has not lapsed.
    async fn is_live(&self, node: &str) -> Result<bool, LeaseError> {
        redis::cmd("EXISTS")
            .arg(node_key(node))
            .query_async::<bool>(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    /// Claims `player` for `node`'s session `claim` (a login there): see the module docs.
    pub async fn claim(
        &self,
        player: PlayerId,
        node: &str,
        claim: u64,
    ) -> Result<Claim, LeaseError> {
        let value = format!("{node}|{claim}");
        let prefix = format!("{node}|");
        // The value of a dead holder, once seen: replaced only if it is still that one.
        let mut dead = String::new();
        // Each round sees a different holder; a few cover any honest race.
        for _ in 0..4 {
            let swap = Swap {
                to: &value,
                prefix: &prefix,
                exact: &dead,
                absent: true,
            };
            let (current, pttl) = match self.swap(player, swap).await? {
                Ok(()) => return Ok(Claim::Claimed),
                Err(refusal) => refusal,
            };
            let holder = current.split_once('|').map_or(current.as_str(), |(n, _)| n);
            if holder.is_empty() || !self.is_live(holder).await? {
                dead = current;
                continue;
            }
            return Ok(Claim::HeldBy {
                node: holder.to_owned(),
                ttl: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
            });
        }
        Err(LeaseError::Unavailable(format!(
            "player {}'s location changed hands too often to claim",
            player.0
        )))
    }

    /// Hands `player` from `node` to node `to` (the player was handed off into a region
    /// `to` holds). `false` if the key names a third node (it is left alone).
    pub async fn hand_over(
        &self,
        player: PlayerId,
        node: &str,
        to: &str,
    ) -> Result<bool, LeaseError> {
        let swap = Swap {
            to: &format!("{to}|0"),
            prefix: &format!("{node}|"),
            exact: "",
            absent: true,
        };
        Ok(self.swap(player, swap).await?.is_ok())
    }

    /// Releases `node`'s claim `claim` of `player` (a logout): `false` if the key holds
    /// anything else (a newer claim, another node) and was left alone.
    pub async fn release(
        &self,
        player: PlayerId,
        node: &str,
        claim: u64,
    ) -> Result<bool, LeaseError> {
        let swap = Swap {
            to: "",
            prefix: "",
            exact: &format!("{node}|{claim}"),
            absent: false,
        };
        Ok(self.swap(player, swap).await?.is_ok())
    }

    /// Releases every key of `players` naming `node`, whatever the claim (the node stops,
    /// its players saved). Pipelined, [`PIPELINE_LEN_MAX`] at a time.
    pub async fn release_all(&self, players: &[PlayerId], node: &str) -> Result<(), LeaseError> {
        let prefix = format!("{node}|");
        for chunk in players.chunks(PIPELINE_LEN_MAX) {
            let mut pipe = redis::pipe();
            for &player in chunk {
                let swap = Swap {
                    to: "",
                    prefix: &prefix,
                    exact: "",
                    absent: false,
                };
                pipe.add_command(self.swap_cmd(player, &swap)).ignore();
            }
            pipe.query_async::<()>(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Extends the TTL of every key of `players` that names `node` (the players it holds).
    /// A key naming another node, or gone, is left alone. Returns how many were extended.
    pub async fn refresh(&self, players: &[PlayerId], node: &str) -> Result<usize, LeaseError> {
        let prefix = format!("{node}|");
        let mut extended = 0;
        for chunk in players.chunks(PIPELINE_LEN_MAX) {
            let mut pipe = redis::pipe();
            for &player in chunk {
                pipe.cmd("EVAL")
                    .arg(REFRESH_SCRIPT)
                    .arg(1)
                    .arg(location_key(player))
                    .arg(&prefix)
                    .arg(ttl_ms(self.ttl));
            }
            let replies: Vec<u8> = pipe
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            extended += replies.iter().filter(|&&r| r == 1).count();
        }
        Ok(extended)
    }

    /// The node holding `player`, if any (for tests and operators).
    pub async fn holder(&self, player: PlayerId) -> Result<Option<String>, LeaseError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(location_key(player))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(value.map(|v| v.split_once('|').map_or(v.clone(), |(n, _)| n.to_owned())))
    }
}
