//! Region ownership: a lease per region with a fencing epoch.
//!
//! A node simulates a region only while it holds the region's lease. Each acquisition
//! takes a new, strictly greater **epoch**; every snapshot the holder writes carries it,
//! and the snapshot store rejects writes of an older epoch ([`crate::StoreError::StaleEpoch`]),
//! so a node that lost its lease (paused, partitioned) cannot overwrite its successor.
//!
//! The holder must stop before the lease can expire anywhere: [`Lease::must_stop`] says so
//! from the holder's own clock, counting the lease from when the acquire or renew request
//! was *sent* (the store starts the TTL later), less [`STOP_MARGIN`]. A holder renews
//! every [`Lease::renew_due`]; a renew that fails or is refused leaves the old deadline in
//! force, so a holder that cannot reach the store stops in time.
//!
//! Two implementations: [`RedisLeases`] (`SET` of `holder|epoch` with a TTL, `INCR` of a
//! per-region epoch counter, both in one Lua script) and [`LocalLeases`] (in-process).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tessera_shared::ids::RegionId;

use crate::clock::Clock;

/// Shortest lease: below it a renew round trip may not fit.
pub const TTL_MIN: Duration = Duration::from_millis(500);
/// Longest holder name, in bytes.
pub const HOLDER_BYTES_MAX: usize = 128;

pub use tessera_cluster::types::{Lease, STOP_MARGIN};

/// Why a lease operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// A TTL below [`TTL_MIN`] or a holder name over [`HOLDER_BYTES_MAX`] or with `|`.
    #[error("invalid lease request: {0}")]
    Invalid(String),
    /// The store could not be reached or did not answer in time.
    #[error("lease store unavailable: {0}")]
    Unavailable(String),
}

/// The contract.
pub trait LeaseStore: Clone + Send + Sync + 'static {
    /// Takes `region`'s lease for `holder` if nobody holds it: `Ok(None)` if another does.
    /// The epoch is greater than every earlier one and at least `min_epoch`: the caller
    /// passes one past its newest stored snapshot's, so a lease store that lost its
    /// counters (a Redis restarted empty) cannot hand out an epoch the snapshot store
    /// would refuse.
    fn acquire(
        &self,
        region: RegionId,
        holder: &str,
        ttl: Duration,
        min_epoch: u64,
    ) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;

    /// Extends `lease` by its TTL from now: `Ok(None)` if it was lost (expired, or taken
    /// by another holder since).
    fn renew(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;

    /// Gives `lease` up; `false` if it was no longer held.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Who holds `region` now, with the epoch.
    fn holder(
        &self,
        region: RegionId,
    ) -> impl Future<Output = Result<Option<(String, u64)>, LeaseError>> + Send;

    /// Publishes where `holder` (a node) takes clients, for `ttl` (refresh it with the
    /// leases): the node is live while it does, and other nodes redirect players crossing
    /// into its regions there.
    fn advertise(
        &self,
        holder: &str,
        addr: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Where `holder` takes clients, if it advertised within its TTL (`None`: not live).
    fn address_of(
        &self,
        holder: &str,
    ) -> impl Future<Output = Result<Option<String>, LeaseError>> + Send;
}

fn check(holder: &str, ttl: Duration) -> Result<(), LeaseError> {
    if ttl < TTL_MIN {
        return Err(LeaseError::Invalid(format!(
            "a TTL of {ttl:?} is below the minimum of {TTL_MIN:?}"
        )));
    }
    if holder.is_empty() || holder.len() > HOLDER_BYTES_MAX || holder.contains('|') {
        return Err(LeaseError::Invalid(format!(
            "a holder name must be 1 to {HOLDER_BYTES_MAX} bytes without '|'"
        )));
    }
    Ok(())
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// In-process leases (the embedded default: one node holds every region; the cluster
/// simulator: several nodes in one process, on a manual [`Clock`]).
#[derive(Clone, Debug, Default)]
pub struct LocalLeases {
    state: Arc<Mutex<LocalState>>,
    clock: Clock,
}

#[derive(Debug, Default)]
struct LocalState {
    epochs: BTreeMap<RegionId, u64>,
    held: BTreeMap<RegionId, (String, u64, Instant)>,
    /// Node addresses, with when each advertisement lapses.
    addresses: BTreeMap<String, (String, Instant)>,
}

impl LocalLeases {
    /// Leases on `clock`'s time.
    pub fn with_clock(clock: Clock) -> Self {
        LocalLeases {
            state: Arc::default(),
            clock,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut LocalState, Instant) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state, self.clock.now())
    }
}

impl LocalState {
    fn current(&mut self, region: RegionId, now: Instant) -> Option<&(String, u64, Instant)> {
        if self.held.get(&region).is_some_and(|h| h.2 <= now) {
            self.held.remove(&region);
        }
        self.held.get(&region)
    }
}

impl LeaseStore for LocalLeases {
    async fn acquire(
        &self,
        region: RegionId,
        holder: &str,
        ttl: Duration,
        min_epoch: u64,
    ) -> Result<Option<Lease>, LeaseError> {
        check(holder, ttl)?;
        Ok(self.with(|state, now| {
            if state.current(region, now).is_some() {
                return None;
            }
            let epoch = state.epochs.entry(region).or_insert(0);
            *epoch = (*epoch + 1).max(min_epoch);
            let epoch = *epoch;
            state
                .held
                .insert(region, (holder.to_owned(), epoch, now + ttl));
            Some(Lease {
                region,
                holder: holder.to_owned(),
                epoch,
                ttl,
                sent_at: now,
            })
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>, LeaseError> {
        Ok(self.with(|state, now| {
            let held = state.current(lease.region, now)?;
            if held.0 != lease.holder || held.1 != lease.epoch {
                return None;
            }
            state.held.insert(
                lease.region,
                (lease.holder.clone(), lease.epoch, now + lease.ttl),
            );
            Some(Lease {
                sent_at: now,
                ..lease.clone()
            })
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<bool, LeaseError> {
        Ok(self.with(|state, now| {
            let mine = state
                .current(lease.region, now)
                .is_some_and(|h| h.0 == lease.holder && h.1 == lease.epoch);
            if mine {
                state.held.remove(&lease.region);
            }
            mine
        }))
    }

    async fn holder(&self, region: RegionId) -> Result<Option<(String, u64)>, LeaseError> {
        Ok(self.with(|state, now| state.current(region, now).map(|h| (h.0.clone(), h.1))))
    }

    async fn advertise(&self, holder: &str, addr: &str, ttl: Duration) -> Result<(), LeaseError> {
        check(holder, ttl)?;
        self.with(|state, now| {
            state
                .addresses
                .insert(holder.to_owned(), (addr.to_owned(), now + ttl));
        });
        Ok(())
    }

    async fn address_of(&self, holder: &str) -> Result<Option<String>, LeaseError> {
        Ok(self.with(|state, now| {
            state
                .addresses
                .get(holder)
                .filter(|(_, until)| *until > now)
                .map(|(addr, _)| addr.clone())
        }))
    }
}

/// Takes the lease if free: KEYS lease, epoch counter; ARGV holder, ttl ms. Returns the new
/// epoch, or nil if held.
const ACQUIRE_SCRIPT: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then return false end \
local e = redis.call('INCR', KEYS[2]) \
if e < tonumber(ARGV[3]) then e = tonumber(ARGV[3]) redis.call('SET', KEYS[2], e) end \
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. e, 'PX', ARGV[2]) \
return e";
/// Extends the lease if it is still this holding: KEYS lease; ARGV `holder|epoch`, ttl ms.
const RENEW_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
/// Deletes the lease if it is still this holding: KEYS lease; ARGV `holder|epoch`.
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
return redis.call('DEL', KEYS[1]) end return 0";

/// Leases in Redis. Keys (hash-tagged by region): `tessera:{r<id>}:lease` (value
/// `holder|epoch`, with the TTL) and `tessera:{r<id>}:epoch` (the counter, never expires).
///
/// Unlike the bus, no circuit breaker: a renewal is worth trying every time until the
/// lease's own deadline ([`Lease::must_stop`]), and a breaker could only make a node give
/// up a region that a recovered Redis would have let it keep. Each call is still bounded
/// by the response timeout.
#[derive(Clone)]
pub struct RedisLeases {
    commands: ConnectionManager,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases").finish_non_exhaustive()
    }
}

fn lease_key(region: RegionId) -> String {
    format!("tessera:{{r{}}}:lease", region.0)
}

fn epoch_key(region: RegionId) -> String {
    format!("tessera:{{r{}}}:epoch", region.0)
}

pub(crate) fn unavailable(e: redis::RedisError) -> LeaseError {
    LeaseError::Unavailable(e.to_string())
}

impl RedisLeases {
    /// Leases over `commands` (a connection manager with response timeouts set, such as
    /// [`crate::redis_bus::connection`] makes).
    pub fn new(commands: ConnectionManager) -> Self {
        RedisLeases { commands }
    }

    /// Connects to `url`, with the bus's timeouts.
    pub async fn connect(url: &str) -> Result<Self, LeaseError> {
        crate::redis_bus::connection(url)
            .await
            .map(RedisLeases::new)
            .map_err(|e| LeaseError::Unavailable(e.to_string()))
    }
}

/// The nodes that publish load reports.
const NODES_KEY: &str = "tessera:nodes";

fn load_key(node: &str) -> String {
    format!("tessera:node:{node}:load")
}

fn assignments_key(node: &str) -> String {
    format!("tessera:node:{node}:assignments")
}

fn node_key(holder: &str) -> String {
    format!("tessera:node:{holder}:addr")
}

impl RedisLeases {
    /// Asks node `node` to take `region` (a transfer): it looks for such requests with
    /// [`RedisLeases::assignments_for`] and takes the region once its lease is free. The
    /// node's requests lapse `ttl` after the last one.
    pub async fn request_assignment(
        &self,
        region: RegionId,
        node: &str,
        ttl: Duration,
    ) -> Result<(), LeaseError> {
        check(node, ttl)?;
        redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(assignments_key(node))
            .arg(region.0)
            .ignore()
            .cmd("PEXPIRE")
            .arg(assignments_key(node))
            .arg(ttl_ms(ttl))
            .ignore()
            .query_async::<()>(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    /// The regions node `node` is asked to take (one round trip).
    pub async fn assignments_for(&self, node: &str) -> Result<Vec<RegionId>, LeaseError> {
        let ids: Vec<u32> = redis::cmd("SMEMBERS")
            .arg(assignments_key(node))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(ids.into_iter().map(RegionId).collect())
    }

    /// Withdraws the request that `node` take `region` (it did, or gave up).
    pub async fn clear_assignment(&self, region: RegionId, node: &str) -> Result<(), LeaseError> {
        redis::cmd("SREM")
            .arg(assignments_key(node))
            .arg(region.0)
            .query_async::<u64>(&mut self.commands.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Publishes node `node`'s load report (opaque text: the server's JSON), for `ttl`,
    /// and lists the node among those that publish.
    pub async fn publish_load(
        &self,
        node: &str,
        report: &str,
        ttl: Duration,
    ) -> Result<(), LeaseError> {
        check(node, ttl)?;
        redis::pipe()
            .cmd("SET")
            .arg(load_key(node))
            .arg(report)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .ignore()
            .cmd("SADD")
            .arg(NODES_KEY)
            .arg(node)
            .ignore()
            .query_async::<()>(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    /// Withdraws node `node`'s load report (it is stopping).
    pub async fn withdraw_load(&self, node: &str) -> Result<(), LeaseError> {
        redis::pipe()
            .cmd("DEL")
            .arg(load_key(node))
            .ignore()
            .cmd("SREM")
            .arg(NODES_KEY)
            .arg(node)
            .ignore()
            .query_async::<()>(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    /// The load reports of the nodes that published one within its TTL (two round trips;
    /// nodes gone for good are dropped from the list).
    pub async fn loads(&self) -> Result<Vec<String>, LeaseError> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(NODES_KEY)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let reports: Vec<Option<String>> = redis::cmd("MGET")
            .arg(nodes.iter().map(|n| load_key(n)).collect::<Vec<_>>())
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        let gone: Vec<&String> = nodes
            .iter()
            .zip(&reports)
            .filter(|(_, r)| r.is_none())
            .map(|(n, _)| n)
            .collect();
        if !gone.is_empty() {
            let _ = redis::cmd("SREM")
                .arg(NODES_KEY)
                .arg(gone)
                .query_async::<u64>(&mut self.commands.clone())
                .await;
        }
        Ok(reports.into_iter().flatten().collect())
    }
}

impl LeaseStore for RedisLeases {
    async fn acquire(
        &self,
        region: RegionId,
        holder: &str,
        ttl: Duration,
        min_epoch: u64,
    ) -> Result<Option<Lease>, LeaseError> {
        check(holder, ttl)?;
        let sent_at = Instant::now();
        let epoch: Option<u64> = redis::cmd("EVAL")
            .arg(ACQUIRE_SCRIPT)
            .arg(2)
            .arg(lease_key(region))
            .arg(epoch_key(region))
            .arg(holder)
            .arg(ttl_ms(ttl))
            .arg(min_epoch)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(epoch.map(|epoch| Lease {
            region,
            holder: holder.to_owned(),
            epoch,
            ttl,
            sent_at,
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>, LeaseError> {
        let sent_at = Instant::now();
        let renewed: u64 = redis::cmd("EVAL")
            .arg(RENEW_SCRIPT)
            .arg(1)
            .arg(lease_key(lease.region))
            .arg(format!("{}|{}", lease.holder, lease.epoch))
            .arg(ttl_ms(lease.ttl))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok((renewed == 1).then(|| Lease {
            sent_at,
            ..lease.clone()
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let released: u64 = redis::cmd("EVAL")
            .arg(RELEASE_SCRIPT)
            .arg(1)
            .arg(lease_key(lease.region))
            .arg(format!("{}|{}", lease.holder, lease.epoch))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(released == 1)
    }

    async fn holder(&self, region: RegionId) -> Result<Option<(String, u64)>, LeaseError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(lease_key(region))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(value.and_then(|v| {
            let (holder, epoch) = v.rsplit_once('|')?;
            Some((holder.to_owned(), epoch.parse().ok()?))
        }))
    }

    async fn advertise(&self, holder: &str, addr: &str, ttl: Duration) -> Result<(), LeaseError> {
        check(holder, ttl)?;
        redis::cmd("SET")
            .arg(node_key(holder))
            .arg(addr)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async::<()>(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    async fn address_of(&self, holder: &str) -> Result<Option<String>, LeaseError> {
        redis::cmd("GET")
            .arg(node_key(holder))
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_stops_before_the_lease_can_expire_and_renews_well_before() {
        let now = Instant::now();
        let lease = Lease {
            region: RegionId(1),
            holder: "a".into(),
            epoch: 1,
            ttl: Duration::from_secs(3),
            sent_at: now,
        };
        assert!(!lease.must_stop(now));
        assert!(!lease.must_stop(now + Duration::from_millis(2_700)));
        assert!(lease.must_stop(now + Duration::from_millis(2_800)));
        assert_eq!(lease.renew_due(), now + Duration::from_secs(1));
    }
}
