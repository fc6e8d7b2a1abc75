//! Region control's side of the cluster: take and give up leases at run time, ask another
//! node to take a region, publish and read load reports. Orchestration lives in Redis
//! beside the leases ([`RedisLeases`]); what the node holds is the ledger's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_persistence::lease::{Lease, LeaseError, LeaseStore, RedisLeases};
use tessera_persistence::location::{LocationStore, RedisLocations};
use tessera_shared::ids::RegionId;

use super::{LEASE_TTL, Shared, TakeError, take_lease};

/// How long a node asked to take a region (a transfer) may take to do it.
pub const ASSIGNMENT_TTL: Duration = Duration::from_secs(30);
/// How long taking a region at run time waits for its lease to be free.
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Region control's side: see the module docs.
#[derive(Debug, Clone)]
pub struct ClusterControl {
    leases: RedisLeases,
    locations: RedisLocations,
    /// The ledger.
    pub shared: Arc<Shared>,
    node: String,
}

impl ClusterControl {
    pub(super) fn new(
        leases: RedisLeases,
        locations: RedisLocations,
        shared: Arc<Shared>,
        node: &str,
    ) -> Self {
        ClusterControl {
            leases,
            locations,
            shared,
            node: node.to_owned(),
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The lease of `region`, if held.
    pub fn lease(&self, region: RegionId) -> Option<Lease> {
        self.shared.ledger().lease(region).cloned()
    }

    /// Takes `region`'s lease with an epoch of at least `min_epoch`, waiting up to
    /// [`TAKE_TIMEOUT`] for a lapsing one; held, not yet active. `Err` names the holder.
    pub async fn take(&self, region: RegionId, min_epoch: u64) -> Result<Lease, TakeError> {
        let deadline = Instant::now() + TAKE_TIMEOUT;
        let lease = take_lease(&self.leases, &self.node, region, min_epoch, deadline).await?;
        self.shared.ledger().hold(lease.clone(), false);
        self.shared.wake();
        Ok(lease)
    }

    /// Marks `region` stepped by the driver (its mail read) or not.
    pub fn set_active(&self, region: RegionId, active: bool) {
        self.shared.ledger().set_active(region, active);
        self.shared.wake();
    }

    /// Gives up `region`'s lease (its state is durable elsewhere by now).
    pub fn give_up(&self, region: RegionId) {
        self.shared.ledger().give_up(region);
        self.shared.wake();
    }

    /// Who holds `region`, if anyone.
    pub async fn holder(&self, region: RegionId) -> Option<String> {
        self.leases
            .holder(region)
            .await
            .ok()
            .flatten()
            .map(|(n, _)| n)
    }

    /// Asks node `to` to take `region` within [`ASSIGNMENT_TTL`].
    pub async fn request_assignment(&self, region: RegionId, to: &str) -> Result<(), LeaseError> {
        self.leases
            .request_assignment(region, to, ASSIGNMENT_TTL)
            .await
    }

    /// The regions another node asked this one to take.
    pub async fn assigned_to_me(&self) -> Vec<RegionId> {
        self.leases
            .assignments_for(&self.node)
            .await
            .unwrap_or_default()
    }

    /// Withdraws the request that this node take `region`.
    pub async fn clear_assignment(&self, region: RegionId) {
        let _ = self.leases.clear_assignment(region, &self.node).await;
    }

    /// Publishes this node's load `report` (JSON; it lapses after a few lease TTLs: a node
    /// that stops publishing is not live).
    pub async fn publish_load(&self, report: &str) {
        if let Err(e) = self
            .leases
            .publish_load(&self.node, report, 3 * LEASE_TTL)
            .await
        {
            tracing::warn!(error = %e, "could not publish the node's load");
        }
    }

    /// The load reports of the live nodes, as published.
    pub async fn loads(&self) -> Result<Vec<String>, LeaseError> {
        self.leases.loads().await
    }

    /// Whether node `name` is alive (it advertised its address within the lease TTL).
    pub async fn is_live(&self, name: &str) -> bool {
        matches!(self.leases.address_of(name).await, Ok(Some(_)))
    }

    /// Leaves the cluster (a graceful stop, after the regions' final snapshots and the
    /// players' final saves): gives up the lease of every region whose snapshots are
    /// `durable`, so that other nodes can take them at once, releases the players' locations
    /// and withdraws the load report. A region whose last snapshot is not durable keeps its
    /// lease until it lapses: its next holder must not start from an older snapshot while
    /// ours may still land (it would be fenced, and lost).
    pub async fn leave(&self, durable: impl Fn(RegionId) -> bool) {
        let (leases, players) = {
            let mut ledger = self.shared.ledger();
            let leases: Vec<Lease> = ledger
                .leased()
                .into_iter()
                .filter(|&r| durable(r))
                .filter_map(|r| {
                    let lease = ledger.lease(r).cloned();
                    // Given up here and now, not through the IO task: it may be stopping.
                    ledger.forget(r);
                    lease
                })
                .collect();
            (leases, ledger.here())
        };
        for lease in leases {
            if let Err(e) = self.leases.release(&lease).await {
                tracing::warn!(region = lease.region.0, error = %e, "lease release failed; it will lapse");
            }
        }
        if let Err(e) = self.locations.release_all(&players, &self.node).await {
            tracing::warn!(players = players.len(), error = %e, "player locations not released; they lapse");
        }
        let _ = self.leases.withdraw_load(&self.node).await;
    }
}
