//! Region control at run time, for orchestrators: take a region (assign), let it go
//! (release), hand it to another node (transfer). Only in a cluster (`[services]
//! redis_url`): without one, the node holds the whole world and there is nobody to hand
//! a region to.
//!
//! - **Assign**: the region's lease is taken with an epoch above its last snapshot's, the
//!   snapshot is loaded and the region rebuilt off the tick's thread, its encoder given
//!   to the snapshot writer, and the driver starts stepping it at the next tick (at the
//!   node's tick). Only then does the node read the region's mail (handoffs waiting for
//!   it, a transfer's players).
//! - **Release**: the node stops reading the region's mail; after its next step the
//!   driver takes its players out (saved, sessions told why) and its final capture to the
//!   writer, and stops stepping it; once that snapshot is durable the lease is given up.
//! - **Transfer**: a release whose players are handed off into the region itself (mail
//!   for its next holder, exactly once) and redirected to it; once the lease is given up,
//!   the target node is asked to take the region, which it does within a fraction of a
//!   second (it polls its requests every [`ASSIGNMENT_POLL`]).
//!
//! One operation at a time per node; each is answered when done (within
//! [`FINAL_SNAPSHOT_WAIT`] for the final snapshot: past it, the answer says the release
//! goes on in the background, and it does).

use std::sync::Arc;
use std::time::Duration;

use tessera_persistence::SnapshotStore;
use tessera_persistence::node_store::NodeStore;
use tessera_regions::Region;
use tessera_shared::config::Config;
use tessera_shared::ids::RegionId;

use crate::cluster::regions::ClusterControl;
use crate::node::{ActionError, AdminAction, NodeHandle};
use crate::placement::{NodeLoad, Placement, suggest};
use crate::snapshots::Snapshots;

/// How long a release waits for the region's final snapshot to be durable before
/// answering (the release then completes in the background).
pub const FINAL_SNAPSHOT_WAIT: Duration = Duration::from_secs(10);
/// How often a node looks for regions it is asked to take.
pub const ASSIGNMENT_POLL: Duration = Duration::from_millis(250);

/// Takes and lets go of regions.
#[derive(Debug)]
pub struct RegionControl {
    config: Arc<Config>,
    seed: u64,
    store: NodeStore,
    snapshots: Snapshots,
    node: NodeHandle,
    cluster: Option<ClusterControl>,
    /// One operation at a time (a release holds it until its lease is given up).
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl RegionControl {
    /// Control over the regions of `config`'s world, for the node behind `node`.
    pub fn new(
        config: Arc<Config>,
        seed: u64,
        store: NodeStore,
        snapshots: Snapshots,
        node: NodeHandle,
        cluster: Option<ClusterControl>,
    ) -> RegionControl {
        RegionControl {
            config,
            seed,
            store,
            snapshots,
            node,
            cluster,
            busy: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The world whose regions these are.
    pub fn world(&self) -> &tessera_shared::config::WorldConfig {
        &self.config.world
    }

    fn cluster(&self) -> Result<&ClusterControl, ActionError> {
        self.cluster.as_ref().ok_or_else(|| {
            ActionError::Conflict(
                "this node holds the whole world (no [services] redis_url): there is no region to assign, release or transfer".into(),
            )
        })
    }

    fn known(&self, region: RegionId) -> Result<(), ActionError> {
        if self.config.world.regions.iter().any(|r| r.id == region) {
            Ok(())
        } else {
            Err(ActionError::NotFound(format!(
                "world.toml has no region {}",
                region.0
            )))
        }
    }

    async fn on_driver(&self, action: AdminAction) -> Result<serde_json::Value, ActionError> {
        self.node.ask(action).await
    }

    /// Takes `region`: lease, snapshot, and the driver steps it from the next tick.
    pub async fn assign(&self, region: RegionId) -> Result<serde_json::Value, ActionError> {
        let cluster = self.cluster()?;
        self.known(region)?;
        let _busy = self.busy.lock().await;
        if cluster.lease(region).is_some() {
            return Err(ActionError::Conflict(format!(
                "region {} is held by this node already",
                region.0
            )));
        }
        let stored = self.store.load(region).await.map_err(|e| {
            ActionError::unavailable(format!("loading region {}: {e}", region.0), 2)
        })?;
        let min_epoch = stored.as_ref().map_or(1, |s| s.epoch + 1);
        let lease = cluster
            .take(region, min_epoch)
            .await
            .map_err(|e| ActionError::Conflict(e.to_string()))?;
        let restored_tick = stored.as_ref().map(|s| s.tick);
        let built = {
            let def = self
                .config
                .world
                .regions
                .iter()
                .find(|r| r.id == region)
                .cloned()
                .expect("checked known");
            let (config, seed) = (self.config.clone(), self.seed);
            tokio::task::spawn_blocking(move || match stored {
                Some(snapshot) => {
                    Region::restore(&def, config, &snapshot.cells).map(|(region, _)| region)
                }
                None => Region::new(&def, config, seed),
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        };
        let mut built = match built {
            Ok(built) => built,
            Err(e) => {
                cluster.give_up(region);
                return Err(ActionError::Unprocessable(format!(
                    "region {} could not be rebuilt from its snapshot: {e}",
                    region.0
                )));
            }
        };
        built.set_epoch(lease.epoch);
        if let Some(encoder) = built.take_snapshot_encoder() {
            self.snapshots
                .add_region(region, lease.epoch, encoder)
                .await;
        }
        match self
            .on_driver(AdminAction::Assign {
                region: Box::new(built),
            })
            .await
        {
            Ok(mut answer) => {
                cluster.set_active(region, true);
                cluster.clear_assignment(region).await;
                answer["epoch"] = lease.epoch.into();
                answer["restored_from_tick"] = restored_tick.into();
                tracing::info!(region = region.0, epoch = lease.epoch, "region assigned");
                Ok(answer)
            }
            Err(e) => {
                self.snapshots.remove_region(region).await;
                cluster.give_up(region);
                Err(e)
            }
        }
    }

    /// Lets `region` go: its players leave (saved) or, with `transfer_to`, are handed to
    /// that node, which is asked to take the region once its final snapshot is durable.
    pub async fn release(
        self: &Arc<Self>,
        region: RegionId,
        transfer_to: Option<String>,
    ) -> Result<serde_json::Value, ActionError> {
        let cluster = self.cluster()?.clone();
        self.known(region)?;
        if let Some(to) = &transfer_to {
            if to == cluster.node() {
                return Err(ActionError::Invalid(
                    "to: the region is on this node already".into(),
                ));
            }
            if !cluster.is_live(to).await {
                return Err(ActionError::NotFound(format!(
                    "to: no live node is called {to:?}"
                )));
            }
        }
        let busy = self.busy.clone().lock_owned().await;
        if cluster.lease(region).is_none() {
            return Err(ActionError::NotFound(format!(
                "region {} is not held by this node",
                region.0
            )));
        }
        // No more mail for the region here: what comes now waits for its next holder.
        cluster.set_active(region, false);
        let mut answer = match self
            .on_driver(AdminAction::Release {
                region,
                transfer: transfer_to.is_some(),
            })
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                cluster.set_active(region, true);
                return Err(e);
            }
        };
        // The lease goes once the final snapshot is durable (in the background if the
        // store is slow: the region is not stepped meanwhile, and nobody else can take it
        // before its state is safe).
        let finish = {
            let control = self.clone();
            let cluster = cluster.clone();
            let to = transfer_to.clone();
            tokio::spawn(async move {
                let _busy = busy;
                while !control
                    .snapshots
                    .flush_region(region, Duration::from_secs(3600))
                    .await
                {}
                control.snapshots.remove_region(region).await;
                cluster.give_up(region);
                if let Some(to) = to
                    && let Err(e) = cluster.request_assignment(region, &to).await
                {
                    tracing::error!(region = region.0, %to, error = %e, "could not ask the node to take the region");
                }
                tracing::info!(region = region.0, "region released");
            })
        };
        match tokio::time::timeout(FINAL_SNAPSHOT_WAIT, finish).await {
            Ok(_) => {
                answer["final_snapshot_durable"] = true.into();
                if let Some(to) = transfer_to {
                    answer["to"] = to.into();
                }
                Ok(answer)
            }
            Err(_) => Err(ActionError::unavailable(
                format!(
                    "region {} is no longer stepped, but its final snapshot waits for the store; the lease is given up once it is durable",
                    region.0
                ),
                5,
            )),
        }
    }

    /// Leaves the cluster, if in one (see [`ClusterControl::leave`]).
    pub async fn leave_cluster(&self) {
        if let Some(cluster) = &self.cluster {
            cluster
                .leave(|region| self.snapshots.is_region_flushed(region))
                .await;
        }
    }

    /// Publishes this node's load and map sample every
    /// [`crate::node::status::STATUS_PUBLISH_INTERVAL`], for placement and the map (cluster
    /// only), until the runtime stops.
    pub async fn publish_load(
        self: Arc<Self>,
        board: Arc<crate::node::status::StatusBoard>,
        admin_addr: String,
        quic_addr: String,
    ) {
        let Ok(cluster) = self.cluster() else { return };
        let cluster = cluster.clone();
        loop {
            tokio::time::sleep(crate::node::status::STATUS_PUBLISH_INTERVAL).await;
            let load = NodeLoad::of(cluster.node(), &board, &admin_addr, &quic_addr);
            if let Ok(report) = serde_json::to_string(&load) {
                cluster.publish_load(&report).await;
            }
        }
    }

    /// The live nodes' reports (`local`, this node's, as of now; the others' as they
    /// published them, at most a second old), by node name.
    pub async fn reports(&self, local: NodeLoad) -> Result<Vec<NodeLoad>, ActionError> {
        let Some(cluster) = &self.cluster else {
            return Ok(vec![local]);
        };
        let mut reports: Vec<NodeLoad> = cluster
            .loads()
            .await
            .map_err(|e| ActionError::unavailable(format!("reading the nodes' loads: {e}"), 2))?
            .iter()
            .filter_map(|report| serde_json::from_str::<NodeLoad>(report).ok())
            .filter(|report| report.node != local.node)
            .collect();
        reports.push(local);
        reports.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(reports)
    }

    /// A placement of the world's regions over the live nodes, by their measured load
    /// (this node alone without a cluster).
    pub async fn placement(&self, local: NodeLoad) -> Result<Placement, ActionError> {
        let regions: Vec<u32> = self.config.world.regions.iter().map(|r| r.id.0).collect();
        Ok(suggest(&regions, &self.reports(local).await?))
    }

    /// Takes the regions other nodes ask this one to take (transfers), every
    /// [`ASSIGNMENT_POLL`], until the runtime stops.
    pub async fn follow_assignments(self: Arc<Self>) {
        let Ok(cluster) = self.cluster() else { return };
        let cluster = cluster.clone();
        loop {
            tokio::time::sleep(ASSIGNMENT_POLL).await;
            for region in cluster.assigned_to_me().await {
                if cluster.lease(region).is_some() {
                    cluster.clear_assignment(region).await;
                    continue;
                }
                // Taken once free (the old holder gives it up after its final snapshot);
                // until then the request stays and is tried again.
                if cluster.holder(region).await.is_some() {
                    continue;
                }
                match self.assign(region).await {
                    Ok(answer) => {
                        tracing::info!(region = region.0, %answer, "took a transferred region")
                    }
                    Err(e) => {
                        tracing::warn!(region = region.0, error = %e, "could not take a transferred region yet")
                    }
                }
            }
        }
    }
}
