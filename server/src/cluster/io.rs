//! The IO task: carries the ledger's actions out against the bus, the leases and the
//! locations, and feeds the answers back. Generic over the three stores, so the same glue
//! runs on Redis (production) and on the in-process stores (tests).
//!
//! One loop owns the schedule: it lets the ledger start what is due
//! ([`tessera_cluster::Ledger::handle_timeout`]), spawns each action as its own task (operations run
//! concurrently, as they would against any remote store; the ledger orders what must be
//! ordered), routes decided logins to their sessions, then sleeps until the ledger's next
//! timeout or until woken ([`Shared::wake`]). Each finished operation locks the ledger,
//! hands it the answer and wakes the loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_cluster::ledger::{Inbound, OutMail};
use tessera_cluster::{Answer, IoAction};
use tessera_persistence::bus::{Batch, Delivery, EventBus, GhostUpdate, Lane, Mail};
use tessera_persistence::lease::LeaseStore;
use tessera_persistence::location::LocationStore;
use tessera_shared::config::Config;
use tessera_shared::ids::RegionId;
use tokio::sync::mpsc;

use super::ghosts::{GHOSTS_OUT_LEN_MAX, GhostBoard, borders, follow_ghosts};
use super::{BUS_STATS_PERIOD, ClusterHandle, ClusterLink, RegionMail, Shared};

/// Longest the loop sleeps without being woken (the ledger's timeouts are shorter).
const IDLE_MAX: Duration = Duration::from_secs(1);

/// The stores the ledger's actions go to, and the address the node advertises.
#[derive(Debug)]
pub struct Io<B, L, S> {
    /// The bus (handoff mail, ghosts).
    pub bus: B,
    /// The leases (and node addresses).
    pub leases: L,
    /// The player locations.
    pub locations: S,
    /// Where this node takes clients (`host:port`).
    pub addr: String,
}

/// Ghost updates waiting to go out with the next publish: the newest of each region.
pub(crate) type PendingGhosts = Mutex<HashMap<RegionId, GhostUpdate>>;

/// Starts the IO task, the ghost tasks and the bus watch on the current runtime; returns
/// the driver's side and the sessions'.
pub fn start<B, L, S>(
    io: Io<B, L, S>,
    shared: Arc<Shared>,
    config: &Config,
) -> (ClusterLink, ClusterHandle)
where
    B: EventBus,
    L: LeaseStore,
    S: LocationStore,
{
    let (ghosts_out, ghosts_rx) = mpsc::channel(GHOSTS_OUT_LEN_MAX);
    let board = Arc::new(GhostBoard::default());
    let pending = Arc::new(PendingGhosts::default());
    let io = Arc::new(io);
    tokio::spawn(run(io.clone(), shared.clone(), pending.clone()));
    tokio::spawn(publish_ghosts(io.bus.clone(), ghosts_rx, pending));
    tokio::spawn(follow_ghosts(
        io.bus.clone(),
        config.clone(),
        shared.clone(),
        board.clone(),
    ));
    tokio::spawn(watch_bus(io.bus.clone(), shared.clone()));
    let active = shared.ledger().active();
    let link = ClusterLink {
        shared: shared.clone(),
        ghosts_out,
        ghosts: board,
        borders: borders(config, &active),
    };
    (link, ClusterHandle::new(shared))
}

async fn run<B: EventBus, L: LeaseStore, S: LocationStore>(
    io: Arc<Io<B, L, S>>,
    shared: Arc<Shared>,
    ghosts: Arc<PendingGhosts>,
) {
    loop {
        let now = Instant::now();
        let (actions, logins, next) = {
            let mut ledger = shared.ledger();
            ledger.handle_timeout(now);
            let actions: Vec<_> = std::iter::from_fn(|| ledger.poll_io()).collect();
            let logins: Vec<_> = std::iter::from_fn(|| ledger.poll_login()).collect();
            (actions, logins, ledger.poll_timeout())
        };
        shared.route_logins(logins);
        for action in actions {
            let (io, shared, ghosts) = (io.clone(), shared.clone(), ghosts.clone());
            tokio::spawn(async move {
                if let Some(answer) = execute(&io, shared.ledger_node(), action, &ghosts).await {
                    shared.ledger().handle(answer, Instant::now());
                    shared.wake();
                }
            });
        }
        let next = next.map_or(now + IDLE_MAX, |t| t.min(now + IDLE_MAX));
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

impl Shared {
    /// This node's name (owned: the lock is not held across the action).
    fn ledger_node(&self) -> String {
        self.ledger().node().to_owned()
    }
}

/// Carries one action out; its answer, if it has one.
pub(crate) async fn execute<B: EventBus, L: LeaseStore, S: LocationStore>(
    io: &Io<B, L, S>,
    node: String,
    action: IoAction<Delivery>,
    ghosts: &PendingGhosts,
) -> Option<Answer<Delivery>> {
    let node = node.as_str();
    let failed = |e: &dyn std::fmt::Display| e.to_string();
    Some(match action {
        IoAction::Claim { op, player, claim } => Answer::Claim(
            op,
            io.locations
                .claim(player, node, claim)
                .await
                .map_err(|e| failed(&e)),
        ),
        IoAction::HandOver { op, moves, first } => Answer::HandOver(
            op,
            io.locations
                .hand_over(&moves, node, first)
                .await
                .map_err(|e| failed(&e)),
        ),
        IoAction::Publish { op, mail } => {
            let batch = Batch {
                mail: mail.into_iter().map(mail_of).collect(),
                ghosts: take_ghosts(ghosts),
            };
            let published = io.bus.publish(&batch).await;
            if let Err(e) = &published {
                tracing::warn!(error = %e, handoffs = batch.mail.len(), "handoffs not published; retrying");
            }
            Answer::Publish(op, published.map(|p| p.refused).map_err(|e| failed(&e)))
        }
        IoAction::Receive { op, region, max } => {
            let received = io.bus.receive(region, node, max).await;
            if let Err(e) = &received {
                tracing::warn!(region = region.0, error = %e, "receiving handoffs failed");
            }
            let inbound = received.map(|deliveries| {
                deliveries
                    .into_iter()
                    .map(|delivery| Inbound {
                        payload: delivery.payload.clone(),
                        delivery,
                    })
                    .collect()
            });
            Answer::Receive(op, inbound.map_err(|e| failed(&e)))
        }
        IoAction::Accepts { op, moves } => Answer::Accepts(
            op,
            io.locations
                .accepts(&moves, node)
                .await
                .map_err(|e| failed(&e)),
        ),
        IoAction::Ack { region, deliveries } => {
            if let Err(e) = io.bus.ack(region, &deliveries).await {
                // Delivered again later, and applied at most once.
                tracing::warn!(region = region.0, error = %e, "handoff acks failed");
            }
            return None;
        }
        IoAction::Adopt { op, m } => {
            let adopted = io.locations.adopt(m, node).await;
            if let Err(e) = &adopted {
                tracing::warn!(player = %m.player, error = %e, "arrived player's location not adopted; retrying");
            }
            Answer::Adopt(op, adopted.map_err(|e| failed(&e)))
        }
        IoAction::Release { op, player, claim } => {
            let released = io.locations.release(player, node, claim).await;
            if let Err(e) = &released {
                tracing::warn!(%player, error = %e, "player location not released; it lapses");
            }
            Answer::Done(op, released.map(|_| ()).map_err(|e| failed(&e)))
        }
        IoAction::Refresh {
            op,
            players,
            in_flight,
        } => {
            let refreshed = io.locations.refresh(&players, &in_flight, node).await;
            if let Err(e) = &refreshed {
                tracing::warn!(players = players.len(), error = %e, "player locations not refreshed");
            }
            Answer::Done(op, refreshed.map(|_| ()).map_err(|e| failed(&e)))
        }
        IoAction::Renew { op, lease } => {
            let renewed = io.leases.renew(&lease).await;
            match &renewed {
                Err(e) => {
                    tracing::warn!(region = lease.region.0, error = %e, "lease renewal failed; retrying")
                }
                Ok(None) => tracing::error!(
                    region = lease.region.0,
                    "region lease lost (taken or expired): this node stops simulating it"
                ),
                Ok(Some(_)) => {}
            }
            Answer::Renew(op, renewed.map_err(|e| failed(&e)))
        }
        IoAction::ReleaseLease { lease } => {
            if let Err(e) = io.leases.release(&lease).await {
                // It lapses within LEASE_TTL anyway.
                tracing::warn!(region = lease.region.0, error = %e, "lease release failed; it will lapse");
            }
            return None;
        }
        IoAction::Advertise { op, ttl } => {
            let advertised = io.leases.advertise(node, &io.addr, ttl).await;
            if let Err(e) = &advertised {
                tracing::warn!(error = %e, "could not advertise the node's address");
            }
            Answer::Done(op, advertised.map_err(|e| failed(&e)))
        }
        IoAction::Directory { op, regions } => {
            Answer::Directory(op, directory(&io.leases, &regions).await)
        }
    })
}

/// Who holds each of `regions` and where that node takes clients (regions nobody holds,
/// or whose node's address lapsed, are left out).
async fn directory<L: LeaseStore>(
    leases: &L,
    regions: &[RegionId],
) -> Result<Vec<(RegionId, String)>, String> {
    let mut found = Vec::with_capacity(regions.len());
    let mut addresses: BTreeMap<String, Option<String>> = BTreeMap::new();
    for &region in regions {
        let Some((holder, _)) = leases.holder(region).await.map_err(|e| e.to_string())? else {
            continue;
        };
        if !addresses.contains_key(&holder) {
            let addr = leases
                .address_of(&holder)
                .await
                .map_err(|e| e.to_string())?;
            addresses.insert(holder.clone(), addr);
        }
        if let Some(Some(addr)) = addresses.get(&holder) {
            found.push((region, addr.clone()));
        }
    }
    Ok(found)
}

fn mail_of(mail: OutMail) -> Mail {
    Mail {
        to: mail.to,
        lane: Lane::High,
        key: mail.key,
        payload: mail.payload,
    }
}

fn take_ghosts(ghosts: &PendingGhosts) -> Vec<GhostUpdate> {
    let mut pending = ghosts.lock().unwrap_or_else(|p| p.into_inner());
    let mut updates: Vec<GhostUpdate> = pending.drain().map(|(_, u)| u).collect();
    updates.sort_by_key(|u| u.region);
    updates
}

/// Publishes the driver's ghost updates: the newest of each region, with the next handoff
/// publish if one is going out, else on their own. Dropped when the bus is down (the next
/// tick's replace them).
async fn publish_ghosts<B: EventBus>(
    bus: B,
    mut updates: mpsc::Receiver<GhostUpdate>,
    pending: Arc<PendingGhosts>,
) {
    while let Some(update) = updates.recv().await {
        {
            let mut waiting = pending.lock().unwrap_or_else(|p| p.into_inner());
            waiting.insert(update.region, update);
            while let Ok(update) = updates.try_recv() {
                waiting.insert(update.region, update);
            }
        }
        // A handoff publish about to go out takes them along; otherwise they go now.
        tokio::task::yield_now().await;
        let ghosts = take_ghosts(&pending);
        if ghosts.is_empty() {
            continue;
        }
        let batch = Batch {
            mail: Vec::new(),
            ghosts,
        };
        if let Err(e) = bus.publish(&batch).await {
            tracing::debug!(error = %e, "ghosts not published");
        }
    }
}

/// Reads the active regions' pending deliveries and dead letters into the bus stats every
/// [`BUS_STATS_PERIOD`]. A region whose reading fails keeps its previous one.
async fn watch_bus<B: EventBus>(bus: B, shared: Arc<Shared>) {
    loop {
        let active = shared.ledger().active();
        let mut read = BTreeMap::new();
        for &region in &active {
            let (pending, dead_letters) =
                tokio::join!(bus.pending(region), bus.dead_letter_count(region));
            match (pending, dead_letters) {
                (Ok(pending), Ok(dead_letters)) => {
                    read.insert(
                        region,
                        RegionMail {
                            pending,
                            dead_letters,
                        },
                    );
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(region = region.0, error = %e, "reading the region's mail failed");
                }
            }
        }
        shared.bus_stats.replace(&active, read);
        tokio::time::sleep(BUS_STATS_PERIOD).await;
    }
}
