//! Where each player is in a cluster: one Redis key per player naming the node that holds
//! its avatar, or the region its avatar is on its way to, so that a player is in the
//! world on one node at a time and a handoff is applied only while it is the player's
//! latest move.
//!
//! The key `tessera:{p<id>}:node` holds `holder|claim|last`:
//! - `holder`: a node name, or `@<region>` while the avatar is in flight to that region;
//! - `claim`: the session that logged the player in on that node (`0` for an avatar that
//!   arrived by handoff);
//! - `last`: the id of the handoff that last moved the player (`0`: none yet).
//!
//! It carries a TTL the holding node keeps extending ([`RedisLocations::refresh`]) and
//! changes hands these ways:
//! - **Claim** (a login): taken if absent, already this node's, or held by a holder that
//!   is not live (a node whose address advertisement lapsed; a region nobody holds).
//!   Otherwise the claim fails and names the holder ([`Claim::HeldBy`]), or says the
//!   player is on its way to a region this node holds ([`Claim::Arriving`]). `last` is
//!   kept if this node held it (a key taken from another holder starts with `last` 0).
//! - **Hand over** (a handoff to another node's region, before its mail is published):
//!   from this node with the claim the avatar had (or from in flight to the region the
//!   player leaves, not adopted yet) to `@<region>|0|<handoff>`. A newer claim there (a
//!   login racing the crossing) keeps the key, and the handoff is dropped: that login has
//!   the player. The receiving node keeps the in-flight key alive while
//!   its region has deferred the handoff.
//! - **Accept** (the receiving node, when it receives a handoff): only if the key still
//!   says this handoff moved the player last and nothing since (`@<region>|0|<handoff>`,
//!   or `<this node>|0|<handoff>`: adopted, no login since), and then the key is extended
//!   (it may have waited long in flight: it must not lapse before the avatar's adoption).
//!   A handoff redelivered after the player moved on, or logged in (a crash between
//!   applying and acknowledging it), is stale, and refused. The receiving node also
//!   refuses one whose player has an avatar there already.
//! - **Adopt** (after the avatar arrived): `@<region>|0|h` becomes `node|0|h`.
//! - **Release** (a logout): deleted if it is still this node's claim, so that a release
//!   racing a newer login of the player on the same node changes nothing.
//! - **Lapse**: a key nobody refreshes (the avatar left without a logout, its node died,
//!   its region is not held) expires after its TTL.
//!
//! Every write is one Lua script on the player's key alone (Redis Cluster safe); liveness
//! is a separate read of the holder's address key or region lease.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tessera_shared::ids::{PlayerId, RegionId};

use crate::clock::Clock;
use crate::lease::{LeaseError, LeaseStore, LocalLeases, RedisLeases, ttl_ms, unavailable};

pub use tessera_cluster::types::{Claim, Move};

/// The contract, one for both implementations ([`RedisLocations`], [`LocalLocations`]):
/// see the module docs for what each operation does to a player's key.
pub trait LocationStore: Clone + Send + Sync + 'static {
    /// Claims `player` for `node`'s session `claim` (a login).
    fn claim(
        &self,
        player: PlayerId,
        node: &str,
        claim: u64,
    ) -> impl Future<Output = Result<Claim, LeaseError>> + Send;

    /// Hands the players of `moves` from `node` to their destination regions, each from
    /// the claim given (`None`: any claim of `node`); `first`: an absent key may be taken
    /// (a retry does not take a key that lapsed since). For each move, whether it was.
    fn hand_over(
        &self,
        moves: &[(Move, Option<u64>)],
        node: &str,
        first: bool,
    ) -> impl Future<Output = Result<Vec<bool>, LeaseError>> + Send;

    /// For each of `moves` received by `node`: whether it is its player's latest move (a
    /// key that is, is extended by the key TTL).
    fn accepts(
        &self,
        moves: &[Move],
        node: &str,
    ) -> impl Future<Output = Result<Vec<bool>, LeaseError>> + Send;

    /// `node` has applied `m`: the in-flight key becomes `node`'s. `false` if the key says
    /// anything else (left alone).
    fn adopt(&self, m: Move, node: &str) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Releases `node`'s claim `claim` of `player`: `false` if the key holds anything else.
    fn release(
        &self,
        player: PlayerId,
        node: &str,
        claim: u64,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Releases every key of `players` naming `node`, whatever the claim.
    fn release_all(
        &self,
        players: &[PlayerId],
        node: &str,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Extends the keys of `players` naming `node` and of `in_flight` still in flight;
    /// returns how many were extended.
    fn refresh(
        &self,
        players: &[PlayerId],
        in_flight: &[Move],
        node: &str,
    ) -> impl Future<Output = Result<usize, LeaseError>> + Send;

    /// The holder of `player` (a node, or `@<region>` in flight), if any.
    fn holder(
        &self,
        player: PlayerId,
    ) -> impl Future<Output = Result<Option<String>, LeaseError>> + Send;
}

/// Players per pipelined round trip when handing over, checking, refreshing or releasing
/// many.
pub const PIPELINE_LEN_MAX: usize = 1_000;

/// Replaces the value if the current one is accepted. KEYS the player's key; ARGV new value
/// (empty: delete), ttl ms, accepted prefix (empty: none), accepted exact value (empty:
/// none), `1` if an absent key is accepted. Returns `{1, '', 0}` when done, else
/// `{0, current value or '', its PTTL}`.
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

/// A claim: takes the key for `ARGV[1]|ARGV[2]` if it is absent, malformed, names
/// `ARGV[1]` already (its `last` is kept), or equals `ARGV[4]` (a dead holder's value
/// seen before: `last` becomes 0, so that no handoff that moved the player before counts
/// as its latest move here). ARGV[3] ttl ms. Returns like [`SWAP_SCRIPT`].
const CLAIM_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
local last = '0' \
if v then \
local h, c, l = string.match(v, '^(.*)|(%d+)|(%d+)$') \
if h and h ~= ARGV[1] and v ~= ARGV[4] then \
return {0, v, redis.call('PTTL', KEYS[1])} end \
if h == ARGV[1] then last = l end end \
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2] .. '|' .. last, 'PX', ARGV[3]) \
return {1, '', 0}";

/// A hand over: sets `ARGV[1]` (the in-flight value, ttl ms `ARGV[2]`) if the key names
/// this node with the avatar's claim (prefix `ARGV[3]`), is in flight to the region the player leaves (prefix
/// `ARGV[4]`: it arrived here and is not adopted yet), is `ARGV[1]` already (a retry), or
/// is absent and `ARGV[5]` is `1` (a first attempt). Returns like [`SWAP_SCRIPT`].
const HAND_OVER_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
local ok = false \
if v == false then ok = ARGV[5] == '1' \
else ok = string.sub(v, 1, #ARGV[3]) == ARGV[3] or string.sub(v, 1, #ARGV[4]) == ARGV[4] \
or v == ARGV[1] end \
if not ok then \
if v == false then return {0, '', 0} end \
return {0, v, redis.call('PTTL', KEYS[1])} end \
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
return {1, '', 0}";

/// Extends the key's TTL if it is `ARGV[1]` exactly (an in-flight value). ARGV[2] ttl ms.
const REFRESH_EXACT_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

/// Extends the key's TTL if it names this node. KEYS the player's key; ARGV `node|`, ttl ms.
const REFRESH_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then \
return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

/// Player locations in Redis.
#[derive(Clone)]
pub struct RedisLocations {
    commands: ConnectionManager,
    ttl: Duration,
    /// The leases and node addresses over the same connection: whether a holder is live.
    leases: RedisLeases,
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

/// A node name a key can carry: not empty, no `|`, not starting with `@`.
fn check(node: &str) -> Result<(), LeaseError> {
    if node.is_empty() || node.contains('|') || node.starts_with('@') {
        return Err(LeaseError::Invalid(format!(
            "node name {node:?}: not empty, no '|', not starting with '@'"
        )));
    }
    Ok(())
}

/// The `(holder, claim, last)` of a value.
fn fields(value: &str) -> Option<(&str, u64, u64)> {
    let (rest, last) = value.rsplit_once('|')?;
    let (holder, claim) = rest.rsplit_once('|')?;
    Some((holder, claim.parse().ok()?, last.parse().ok()?))
}

/// One swap: see [`SWAP_SCRIPT`].
struct Swap<'a> {
    to: &'a str,
    prefix: &'a str,
    exact: &'a str,
    absent: bool,
}

/// What a script found when it did not swap: the current value and its PTTL.
type Refusal = (String, i64);

fn outcome(reply: (u8, String, i64)) -> Result<(), Refusal> {
    match reply {
        (1, _, _) => Ok(()),
        (_, value, pttl) => Err((value, pttl)),
    }
}

impl RedisLocations {
    /// Locations over `commands` (a connection manager with response timeouts set, such as
    /// [`crate::redis_bus::connection`] makes); keys last `ttl` past their last refresh.
    pub fn new(commands: ConnectionManager, ttl: Duration) -> Self {
        RedisLocations {
            leases: RedisLeases::new(commands.clone()),
            commands,
            ttl,
        }
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
        Ok(outcome(reply))
    }
}

/// The live holder of a holder field: a node whose address advertisement has not lapsed,
/// or the node holding the region of `@<region>`. `None`: not live.
async fn live_holder<L: LeaseStore>(
    leases: &L,
    holder: &str,
) -> Result<Option<String>, LeaseError> {
    match holder.strip_prefix('@') {
        Some(region) => match region.parse() {
            Ok(region) => Ok(leases.holder(RegionId(region)).await?.map(|(node, _)| node)),
            Err(_) => Ok(None),
        },
        None => Ok(leases.address_of(holder).await?.map(|_| holder.to_owned())),
    }
}

/// A claim of `node` was refused by a key held by `holder` (`live`: its live holder) with
/// `pttl` ms left: the answer, or `None` to claim again, replacing that value (its holder
/// is not live).
fn after_refusal(node: &str, holder: &str, pttl: i64, live: Option<String>) -> Option<Claim> {
    match live {
        // `@<region>` of a region held here (a node's own name was claimed).
        Some(live) if live == node => {
            holder
                .strip_prefix('@')
                .and_then(|r| r.parse().ok())
                .map(|region| Claim::Arriving {
                    region: RegionId(region),
                })
        }
        Some(live) => Some(Claim::HeldBy {
            node: live,
            ttl: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
        }),
        None => None,
    }
}

/// The values of a key that take the handoff `m` received by `node`: in flight for it, or
/// adopted by `node` after it with no login since (claim 0: `node` applied it, and this is
/// a redelivery from before its acknowledgement; whether the avatar is still there is the
/// node's to check). A key a login claimed since takes no earlier handoff: that login's
/// avatar has the player.
fn accepted_values(m: &Move, node: &str) -> [String; 2] {
    [m.in_flight(), format!("{node}|0|{}", m.handoff.0)]
}

/// An accept: extends the key (`ARGV[3]` ms) and returns 1 if it is `ARGV[1]` or
/// `ARGV[2]` ([`accepted_values`]), else 0. Extended so that a key that waited long in
/// flight cannot lapse between its handoff's application and its adoption.
const ACCEPT_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
if v and (v == ARGV[1] or v == ARGV[2]) then \
redis.call('PEXPIRE', KEYS[1], ARGV[3]) return 1 end return 0";

/// Why a claim gives up: the key changed hands on every try.
fn changed_too_often(player: PlayerId) -> LeaseError {
    LeaseError::Unavailable(format!(
        "player {}'s location changed hands too often to claim",
        player.0
    ))
}

/// Claims a key takes at most: each round sees a different holder, a few cover any
/// honest race.
const CLAIM_ROUNDS: usize = 4;

impl LocationStore for RedisLocations {
    /// Claims `player` for `node`'s session `claim` (a login): see the module docs.
    async fn claim(&self, player: PlayerId, node: &str, claim: u64) -> Result<Claim, LeaseError> {
        check(node)?;
        // The value of a dead holder, once seen: replaced only if it is still that one.
        let mut dead = String::new();
        for _ in 0..CLAIM_ROUNDS {
            let reply: (u8, String, i64) = redis::cmd("EVAL")
                .arg(CLAIM_SCRIPT)
                .arg(1)
                .arg(location_key(player))
                .arg(node)
                .arg(claim)
                .arg(ttl_ms(self.ttl))
                .arg(&dead)
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            let (current, pttl) = match outcome(reply) {
                Ok(()) => return Ok(Claim::Claimed),
                Err(refusal) => refusal,
            };
            let holder = fields(&current).map_or("", |(h, _, _)| h);
            let live = live_holder(&self.leases, holder).await?;
            if let Some(claim) = after_refusal(node, holder, pttl, live) {
                return Ok(claim);
            }
            dead = current;
        }
        Err(changed_too_often(player))
    }

    /// Hands the players of `moves` from `node` to their destination regions (each
    /// handoff's mail is published after this): `@<region>|0|<handoff>`, if the key names
    /// `node` with the claim the avatar had there (the `Some` of each move; `None`: any
    /// claim of `node`), is in flight to the region the player leaves (it arrived at
    /// `node` and its adoption has not run yet), says so already (a retry), or is absent
    /// on a `first` attempt (a retry does not take a key that lapsed since: the player may
    /// have logged in elsewhere). A newer claim of `node` (a login racing the crossing)
    /// keeps the key: that login has the player. One pipelined round trip per
    /// [`PIPELINE_LEN_MAX`]; for each move, whether it was handed over.
    async fn hand_over(
        &self,
        moves: &[(Move, Option<u64>)],
        node: &str,
        first: bool,
    ) -> Result<Vec<bool>, LeaseError> {
        check(node)?;
        let mut handed = Vec::with_capacity(moves.len());
        for chunk in moves.chunks(PIPELINE_LEN_MAX) {
            let mut pipe = redis::pipe();
            for (m, claim) in chunk {
                let prefix = match claim {
                    Some(claim) => format!("{node}|{claim}|"),
                    None => format!("{node}|"),
                };
                pipe.cmd("EVAL")
                    .arg(HAND_OVER_SCRIPT)
                    .arg(1)
                    .arg(location_key(m.player))
                    .arg(m.in_flight())
                    .arg(ttl_ms(self.ttl))
                    .arg(prefix)
                    .arg(format!("@{}|0|", m.from.0))
                    .arg(if first { "1" } else { "0" });
            }
            let replies: Vec<(u8, String, i64)> = pipe
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            handed.extend(replies.into_iter().map(|r| outcome(r).is_ok()));
        }
        Ok(handed)
    }

    /// For each of `moves` received by `node`: whether it is the player's latest move
    /// (its key is `@<region>|0|<handoff>`, or names `node` with `last` = the handoff: a
    /// redelivery to a node that applied it before). One pipelined read per
    /// [`PIPELINE_LEN_MAX`].
    async fn accepts(&self, moves: &[Move], node: &str) -> Result<Vec<bool>, LeaseError> {
        let ttl = ttl_ms(self.ttl);
        let mut accepted = Vec::with_capacity(moves.len());
        for chunk in moves.chunks(PIPELINE_LEN_MAX) {
            let mut pipe = redis::pipe();
            for m in chunk {
                let [in_flight, adopted] = accepted_values(m, node);
                pipe.cmd("EVAL")
                    .arg(ACCEPT_SCRIPT)
                    .arg(1)
                    .arg(location_key(m.player))
                    .arg(in_flight)
                    .arg(adopted)
                    .arg(ttl);
            }
            let replies: Vec<u8> = pipe
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            accepted.extend(replies.into_iter().map(|r| r == 1));
        }
        Ok(accepted)
    }

    /// `node` has applied `m`: `@<region>|0|<handoff>` becomes `node|0|<handoff>`. `false`
    /// if the key says anything else (left alone).
    async fn adopt(&self, m: Move, node: &str) -> Result<bool, LeaseError> {
        check(node)?;
        let swap = Swap {
            to: &format!("{node}|0|{}", m.handoff.0),
            prefix: "",
            exact: &m.in_flight(),
            absent: false,
        };
        Ok(self.swap(m.player, swap).await?.is_ok())
    }

    /// Releases `node`'s claim `claim` of `player` (a logout): `false` if the key holds
    /// anything else (a newer claim, another holder) and was left alone.
    async fn release(&self, player: PlayerId, node: &str, claim: u64) -> Result<bool, LeaseError> {
        check(node)?;
        let swap = Swap {
            to: "",
            prefix: &format!("{node}|{claim}|"),
            exact: "",
            absent: false,
        };
        Ok(self.swap(player, swap).await?.is_ok())
    }

    /// Releases every key of `players` naming `node`, whatever the claim (the node stops,
    /// its players saved). Pipelined, [`PIPELINE_LEN_MAX`] at a time.
    async fn release_all(&self, players: &[PlayerId], node: &str) -> Result<(), LeaseError> {
        check(node)?;
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

    /// Extends the TTL of every key of `players` that names `node` (the players it holds)
    /// and of every key still in flight for one of `in_flight` (handoffs received here and
    /// not applied yet: a region deferred them). Any other key is left alone. Returns how
    /// many were extended.
    async fn refresh(
        &self,
        players: &[PlayerId],
        in_flight: &[Move],
        node: &str,
    ) -> Result<usize, LeaseError> {
        check(node)?;
        let prefix = format!("{node}|");
        let ttl = ttl_ms(self.ttl);
        // (script, player, the script's argument): a node's keys by prefix, in-flight
        // ones exactly.
        let entries: Vec<(&str, PlayerId, String)> = players
            .iter()
            .map(|&player| (REFRESH_SCRIPT, player, prefix.clone()))
            .chain(
                in_flight
                    .iter()
                    .map(|m| (REFRESH_EXACT_SCRIPT, m.player, m.in_flight())),
            )
            .collect();
        let mut extended = 0;
        for chunk in entries.chunks(PIPELINE_LEN_MAX) {
            let mut pipe = redis::pipe();
            for (script, player, arg) in chunk {
                pipe.cmd("EVAL")
                    .arg(*script)
                    .arg(1)
                    .arg(location_key(*player))
                    .arg(arg)
                    .arg(ttl);
            }
            let replies: Vec<u8> = pipe
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            extended += replies.iter().filter(|&&r| r == 1).count();
        }
        Ok(extended)
    }

    /// The holder of `player` (a node, or `@<region>` in flight), if any.
    async fn holder(&self, player: PlayerId) -> Result<Option<String>, LeaseError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(location_key(player))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(value.and_then(|v| fields(&v).map(|(h, _, _)| h.to_owned())))
    }
}

/// Player locations in process: the cluster simulator's (several nodes in one process on
/// a manual [`Clock`]), with the same semantics as the Lua scripts of
/// [`RedisLocations`], checked by the same suite (tests/location.rs). Liveness comes from
/// the [`LocalLeases`] the nodes advertise in.
#[derive(Clone, Debug)]
pub struct LocalLocations {
    keys: Arc<Mutex<BTreeMap<PlayerId, (String, Instant)>>>,
    leases: LocalLeases,
    ttl: Duration,
    clock: Clock,
}

impl LocalLocations {
    /// Locations whose keys last `ttl` past their last refresh, on `clock`'s time, with
    /// liveness from `leases`.
    pub fn new(leases: LocalLeases, ttl: Duration, clock: Clock) -> Self {
        LocalLocations {
            keys: Arc::default(),
            leases,
            ttl,
            clock,
        }
    }

    /// Runs `f` on the keys, expired ones gone, with now.
    fn with<T>(&self, f: impl FnOnce(&mut Keys<'_>) -> T) -> T {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        keys.retain(|_, (_, until)| *until > now);
        f(&mut Keys {
            keys: &mut keys,
            now,
            ttl: self.ttl,
        })
    }
}

/// The keys of [`LocalLocations`], locked.
struct Keys<'a> {
    keys: &'a mut BTreeMap<PlayerId, (String, Instant)>,
    now: Instant,
    ttl: Duration,
}

impl Keys<'_> {
    fn get(&self, player: PlayerId) -> Option<&str> {
        self.keys.get(&player).map(|(v, _)| v.as_str())
    }

    fn set(&mut self, player: PlayerId, value: String) {
        self.keys.insert(player, (value, self.now + self.ttl));
    }

    fn pttl(&self, player: PlayerId) -> i64 {
        self.keys.get(&player).map_or(0, |(_, until)| {
            i64::try_from(until.saturating_duration_since(self.now).as_millis()).unwrap_or(i64::MAX)
        })
    }

    /// Extends `player`'s key if `keep` accepts its value; whether it did.
    fn extend(&mut self, player: PlayerId, keep: impl Fn(&str) -> bool) -> bool {
        let until = self.now + self.ttl;
        match self.keys.get_mut(&player) {
            Some((value, at)) if keep(value) => {
                *at = until;
                true
            }
            _ => false,
        }
    }
}

impl LocationStore for LocalLocations {
    async fn claim(&self, player: PlayerId, node: &str, claim: u64) -> Result<Claim, LeaseError> {
        check(node)?;
        let mut dead = String::new();
        for _ in 0..CLAIM_ROUNDS {
            // CLAIM_SCRIPT.
            let refused = self.with(|keys| {
                let mut last = 0;
                if let Some(v) = keys.get(player) {
                    let parsed = fields(v);
                    if let Some((h, _, _)) = parsed
                        && h != node
                        && v != dead
                    {
                        return Some((v.to_owned(), keys.pttl(player)));
                    }
                    if let Some((h, _, l)) = parsed
                        && h == node
                    {
                        last = l;
                    }
                }
                keys.set(player, format!("{node}|{claim}|{last}"));
                None
            });
            let Some((current, pttl)) = refused else {
                return Ok(Claim::Claimed);
            };
            let holder = fields(&current).map_or("", |(h, _, _)| h);
            let live = live_holder(&self.leases, holder).await?;
            if let Some(claim) = after_refusal(node, holder, pttl, live) {
                return Ok(claim);
            }
            dead = current;
        }
        Err(changed_too_often(player))
    }

    async fn hand_over(
        &self,
        moves: &[(Move, Option<u64>)],
        node: &str,
        first: bool,
    ) -> Result<Vec<bool>, LeaseError> {
        check(node)?;
        Ok(self.with(|keys| {
            moves
                .iter()
                .map(|(m, claim)| {
                    let prefix = match claim {
                        Some(claim) => format!("{node}|{claim}|"),
                        None => format!("{node}|"),
                    };
                    let leaving = format!("@{}|0|", m.from.0);
                    let target = m.in_flight();
                    let ok = match keys.get(m.player) {
                        None => first,
                        Some(v) => v.starts_with(&prefix) || v.starts_with(&leaving) || v == target,
                    };
                    if ok {
                        keys.set(m.player, target);
                    }
                    ok
                })
                .collect()
        }))
    }

    async fn accepts(&self, moves: &[Move], node: &str) -> Result<Vec<bool>, LeaseError> {
        Ok(self.with(|keys| {
            moves
                .iter()
                .map(|m| {
                    let values = accepted_values(m, node);
                    keys.extend(m.player, |v| values.iter().any(|a| a == v))
                })
                .collect()
        }))
    }

    async fn adopt(&self, m: Move, node: &str) -> Result<bool, LeaseError> {
        check(node)?;
        Ok(self.with(|keys| {
            let adopt = keys.get(m.player) == Some(m.in_flight().as_str());
            if adopt {
                keys.set(m.player, format!("{node}|0|{}", m.handoff.0));
            }
            adopt
        }))
    }

    async fn release(&self, player: PlayerId, node: &str, claim: u64) -> Result<bool, LeaseError> {
        check(node)?;
        let prefix = format!("{node}|{claim}|");
        Ok(self.with(|keys| {
            let mine = keys.get(player).is_some_and(|v| v.starts_with(&prefix));
            if mine {
                keys.keys.remove(&player);
            }
            mine
        }))
    }

    async fn release_all(&self, players: &[PlayerId], node: &str) -> Result<(), LeaseError> {
        check(node)?;
        let prefix = format!("{node}|");
        self.with(|keys| {
            for player in players {
                if keys.get(*player).is_some_and(|v| v.starts_with(&prefix)) {
                    keys.keys.remove(player);
                }
            }
        });
        Ok(())
    }

    async fn refresh(
        &self,
        players: &[PlayerId],
        in_flight: &[Move],
        node: &str,
    ) -> Result<usize, LeaseError> {
        check(node)?;
        let prefix = format!("{node}|");
        Ok(self.with(|keys| {
            let mut extended = 0;
            for &player in players {
                extended += usize::from(keys.extend(player, |v| v.starts_with(&prefix)));
            }
            for m in in_flight {
                let value = m.in_flight();
                extended += usize::from(keys.extend(m.player, |v| v == value));
            }
            extended
        }))
    }

    async fn holder(&self, player: PlayerId) -> Result<Option<String>, LeaseError> {
        Ok(self.with(|keys| {
            keys.get(player)
                .and_then(fields)
                .map(|(h, _, _)| h.to_owned())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_into_their_fields() {
        assert_eq!(fields("node-a|7|0"), Some(("node-a", 7, 0)));
        assert_eq!(fields("@2|0|99"), Some(("@2", 0, 99)));
        assert_eq!(fields("node-a|7"), None);
        assert_eq!(fields("node-a|x|1"), None);
        assert!(check("node-a").is_ok());
        assert!(check("@2").is_err() && check("a|b").is_err() && check("").is_err());
    }
}
