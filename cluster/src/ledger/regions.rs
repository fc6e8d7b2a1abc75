//! Regions: the leases held, their renews and deadlines, and the directory of regions held
//! elsewhere.

use std::collections::BTreeMap;
use std::time::Instant;

use tessera_shared::ids::RegionId;

use super::{IoAction, IoError, Ledger, OpId, Timing};
use crate::types::{Lease, STOP_MARGIN};

/// A held lease.
#[derive(Debug)]
struct Holding {
    lease: Lease,
    /// Whether the driver steps the region (a region is leased before it is loaded, and
    /// stays leased while its final snapshot is written).
    active: bool,
    /// The renew in flight.
    renewing: Option<OpId>,
    /// When to try the next renew (its due time, or a retry after a failure).
    renew_at: Instant,
}

#[derive(Debug)]
pub(super) struct Regions {
    held: BTreeMap<RegionId, Holding>,
    /// Lost since the driver last asked.
    lost: Vec<RegionId>,
    /// Bumped whenever the set of active regions changes.
    version: u64,
    directory: BTreeMap<RegionId, String>,
    directory_op: Option<OpId>,
    next_directory: Instant,
    next_advertise: Instant,
    /// The advertisement in flight, with when it was sent.
    advertising: Option<(OpId, Instant)>,
    /// Until when this node is surely live (its last advertisement, from when it was sent).
    live_until: Option<Instant>,
}

impl Regions {
    pub(super) fn new(now: Instant) -> Self {
        Regions {
            held: BTreeMap::new(),
            lost: Vec::new(),
            version: 0,
            directory: BTreeMap::new(),
            directory_op: None,
            next_directory: now,
            next_advertise: now,
            advertising: None,
            live_until: None,
        }
    }

    /// Whether the node must stop stepping `lease`'s region at `now`: past the lease, or
    /// past its own advertisement (others may then take its players).
    fn must_stop(&self, lease: &Lease, now: Instant) -> bool {
        lease.must_stop(now)
            || self
                .live_until
                .is_none_or(|until| now + STOP_MARGIN >= until)
    }

    pub(super) fn has_active(&self) -> bool {
        self.held.values().any(|h| h.active)
    }

    pub(super) fn active(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.held
            .iter()
            .filter(|(_, h)| h.active)
            .map(|(&region, _)| region)
    }

    pub(super) fn next_timeout(&self, _timing: &Timing) -> Option<Instant> {
        let renews = self
            .held
            .values()
            .filter(|h| h.renewing.is_none())
            .map(|h| h.renew_at);
        let directory = self.directory_op.is_none().then_some(self.next_directory);
        let advertise = self.advertising.is_none().then_some(self.next_advertise);
        renews.chain(directory).chain(advertise).min()
    }
}

impl<D: Clone + std::fmt::Debug> Ledger<D> {
    /// Holds `lease`; `active`: the driver steps its region from now on.
    pub fn hold(&mut self, lease: Lease, active: bool) {
        let renew_at = lease.renew_due();
        self.regions.held.insert(
            lease.region,
            Holding {
                lease,
                active,
                renewing: None,
                renew_at,
            },
        );
        self.regions.version += 1;
    }

    /// Marks `region` stepped by the driver (its mail is read) or not (a region being let
    /// go: its mail waits for the next holder).
    pub fn set_active(&mut self, region: RegionId, active: bool) {
        if let Some(holding) = self.regions.held.get_mut(&region) {
            holding.active = active;
        }
        self.regions.version += 1;
    }

    /// Stops holding `region` and gives its lease up (its state is durable by now).
    /// Returns the lease, if it was held.
    pub fn give_up(&mut self, region: RegionId) -> Option<Lease> {
        let lease = self.forget(region)?;
        self.io.push_back(IoAction::ReleaseLease {
            lease: lease.clone(),
        });
        Some(lease)
    }

    /// Stops holding `region` without giving its lease up here (the caller releases it, or
    /// lets it lapse). Returns the lease, if it was held.
    pub fn forget(&mut self, region: RegionId) -> Option<Lease> {
        let holding = self.regions.held.remove(&region)?;
        self.regions.version += 1;
        Some(holding.lease)
    }

    /// The epoch of this node's holding of `region`, if it holds it.
    pub(super) fn holding_epoch(&self, region: RegionId) -> Option<u64> {
        self.regions.held.get(&region).map(|h| h.lease.epoch)
    }

    /// Whether this node steps `region` under the holding of `epoch`.
    pub(super) fn holds_active(&self, region: RegionId, epoch: u64) -> bool {
        self.regions
            .held
            .get(&region)
            .is_some_and(|h| h.active && h.lease.epoch == epoch)
    }

    /// The lease of `region`, if held.
    pub fn lease(&self, region: RegionId) -> Option<&Lease> {
        self.regions.held.get(&region).map(|h| &h.lease)
    }

    /// Every leased region.
    pub fn leased(&self) -> Vec<RegionId> {
        self.regions.held.keys().copied().collect()
    }

    /// The regions the driver steps.
    pub fn active(&self) -> Vec<RegionId> {
        self.regions.active().collect()
    }

    /// Changes whenever the set of active regions does.
    pub fn version(&self) -> u64 {
        self.regions.version
    }

    /// Held regions lost since the last call (their lease not renewed before its
    /// deadline, or taken): the driver stops stepping them at once.
    pub fn take_lost(&mut self) -> Vec<RegionId> {
        std::mem::take(&mut self.regions.lost)
    }

    /// The address of the node holding `region`, as last read.
    pub fn address_of(&self, region: RegionId) -> Option<&str> {
        self.regions.directory.get(&region).map(String::as_str)
    }

    pub(super) fn expire_leases(&mut self, now: Instant) {
        let due: Vec<RegionId> = self
            .regions
            .held
            .iter()
            .filter(|(_, h)| self.regions.must_stop(&h.lease, now))
            .map(|(&r, _)| r)
            .collect();
        for region in due {
            self.lose(region);
        }
    }

    fn lose(&mut self, region: RegionId) {
        if self.regions.held.remove(&region).is_some() {
            self.regions.version += 1;
            self.regions.lost.push(region);
            self.stats.leases_lost += 1;
        }
    }

    pub(super) fn pump_regions(&mut self, now: Instant) {
        self.expire_leases(now);
        let due: Vec<RegionId> = self
            .regions
            .held
            .iter()
            .filter(|(_, h)| h.renewing.is_none() && h.renew_at <= now)
            .map(|(&r, _)| r)
            .collect();
        for region in due {
            let op = self.op();
            let holding = self.regions.held.get_mut(&region).expect("listed above");
            holding.renewing = Some(op);
            let lease = holding.lease.clone();
            self.io.push_back(IoAction::Renew { op, lease });
        }
        if self.regions.advertising.is_none() && self.regions.next_advertise <= now {
            self.regions.next_advertise = now + self.timing.advertise_every;
            let op = self.op();
            self.regions.advertising = Some((op, now));
            let ttl = self.timing.address_ttl;
            self.io.push_back(IoAction::Advertise { op, ttl });
        }
        if self.regions.directory_op.is_none() && self.regions.next_directory <= now {
            self.regions.next_directory = now + self.timing.directory_refresh;
            let op = self.op();
            self.regions.directory_op = Some(op);
            let regions = self
                .world
                .iter()
                .copied()
                .filter(|r| !self.regions.held.contains_key(r))
                .collect();
            self.io.push_back(IoAction::Directory { op, regions });
        }
    }

    /// The node advertised its address (sent at `sent`) for `address_ttl`, before it
    /// holds anything (a node starting up).
    pub fn advertised_at(&mut self, sent: Instant) {
        let until = sent + self.timing.address_ttl;
        self.regions.live_until = Some(self.regions.live_until.map_or(until, |u| u.max(until)));
    }

    /// Until when the node is surely live, as far as it knows.
    pub fn live_until(&self) -> Option<Instant> {
        self.regions.live_until
    }

    pub(super) fn advertised(&mut self, op: OpId, ok: bool) {
        if let Some((sent_op, sent)) = self.regions.advertising
            && sent_op == op
        {
            self.regions.advertising = None;
            if ok {
                self.advertised_at(sent);
            }
        }
    }

    pub(super) fn on_renew(
        &mut self,
        op: OpId,
        result: Result<Option<Lease>, IoError>,
        now: Instant,
    ) {
        let Some((&region, _)) = self
            .regions
            .held
            .iter()
            .find(|(_, h)| h.renewing == Some(op))
        else {
            return; // Given up or lost meanwhile.
        };
        match result {
            Ok(Some(renewed)) => {
                let holding = self.regions.held.get_mut(&region).expect("found above");
                holding.renewing = None;
                if renewed.epoch == holding.lease.epoch {
                    holding.renew_at = renewed.renew_due();
                    holding.lease = renewed;
                }
            }
            Ok(None) => self.lose(region),
            Err(_) => {
                let retry = now + self.timing.renew_retry;
                let must_stop = {
                    let holding = &self.regions.held[&region];
                    self.regions.must_stop(&holding.lease, now)
                };
                let holding = self.regions.held.get_mut(&region).expect("found above");
                holding.renewing = None;
                if must_stop {
                    self.lose(region);
                } else {
                    holding.renew_at = retry;
                }
            }
        }
    }

    pub(super) fn on_directory(
        &mut self,
        op: OpId,
        result: Result<Vec<(RegionId, String)>, IoError>,
    ) {
        if self.regions.directory_op != Some(op) {
            return;
        }
        self.regions.directory_op = None;
        if let Ok(found) = result {
            self.regions.directory = found.into_iter().collect();
        }
    }
}
