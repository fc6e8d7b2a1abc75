//! The regions this node simulates, stepped together: in parallel on rayon (each region
//! single-threaded inside), then handoffs routed between them at the tick boundary.

use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_regions::hash::Fnv1a;
use tessera_regions::io::HandoffRecord;
use tessera_regions::snapshot::{RestoreStats, SnapshotEncoder, SnapshotRecords};
use tessera_regions::{Region, RegionError, TickInput};
use tessera_shared::config::Config;
use tessera_shared::ids::RegionId;

/// All regions of the world, local to this process (the embedded default; with a bus,
/// issue 4 makes some of them remote).
pub struct LocalRegions {
    regions: Vec<Region>,
    /// Next tick's input per region, same order as `regions`.
    inputs: Vec<TickInput>,
    slot_of: HashMap<RegionId, usize>,
    /// Handoffs into regions not held here, for the caller to send on.
    outbound: Vec<HandoffRecord>,
    /// How long each region's last step took, same order as `regions`.
    step_durations: Vec<Duration>,
}

impl LocalRegions {
    /// Every region of `config`'s world, seeded with `seed`.
    pub fn new(config: Arc<Config>, seed: u64) -> Result<LocalRegions, RegionError> {
        let all: Vec<RegionId> = config.world.regions.iter().map(|r| r.id).collect();
        Self::restore(config, seed, &BTreeMap::new(), &all).map(|(local, _)| local)
    }

    /// Every region of `config`'s world: restored from its snapshot cells in `stored`
    /// where there are some, new (seeded with `seed`) where not. The regions step
    /// together, so all are brought to the newest restored tick: a new region starts
    /// there, and a restored one that lags (the node stopped between two regions'
    /// commits) is stepped with empty input up to it, as if time had passed without
    /// players, which it did.
    pub fn restore(
        config: Arc<Config>,
        seed: u64,
        stored: &BTreeMap<RegionId, BTreeMap<u32, Vec<u8>>>,
        held: &[RegionId],
    ) -> Result<(LocalRegions, Vec<(RegionId, RestoreStats)>), RegionError> {
        let defs: Vec<_> = config
            .world
            .regions
            .iter()
            .filter(|d| held.contains(&d.id))
            .cloned()
            .collect();
        let mut restored = Vec::new();
        let mut regions = Vec::with_capacity(defs.len());
        for def in &defs {
            match stored.get(&def.id) {
                Some(cells) => {
                    let (region, stats) = Region::restore(def, config.clone(), cells)?;
                    restored.push((def.id, stats));
                    regions.push(Some(region));
                }
                None => regions.push(None),
            }
        }
        let tick = regions
            .iter()
            .flatten()
            .map(Region::tick)
            .max()
            .unwrap_or(0);
        let regions = regions
            .into_iter()
            .zip(&defs)
            .map(|(region, def)| match region {
                Some(mut region) => {
                    while region.tick() < tick {
                        region.step(TickInput::default());
                    }
                    Ok(region)
                }
                None => Region::new_at(def, config.clone(), seed, tick),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let slot_of = regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id(), i))
            .collect();
        let inputs = regions.iter().map(|_| TickInput::default()).collect();
        Ok((
            LocalRegions {
                regions,
                inputs,
                slot_of,
                outbound: Vec::new(),
                step_durations: Vec::new(),
            },
            restored,
        ))
    }

    /// The tick-thread half of every region's snapshot capture (in parallel), in region
    /// order; encode them with the regions' encoders.
    pub fn capture_records(&mut self) -> Vec<(RegionId, SnapshotRecords)> {
        self.regions
            .par_iter_mut()
            .map(|region| (region.id(), region.capture_records()))
            .collect()
    }

    /// The regions' snapshot encoders, to encode captures off the tick's thread.
    pub fn take_snapshot_encoders(&mut self) -> Vec<(RegionId, SnapshotEncoder)> {
        self.regions
            .iter_mut()
            .filter_map(|region| Some((region.id(), region.take_snapshot_encoder()?)))
            .collect()
    }

    /// The regions, in id order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region with id `id`.
    pub fn region(&self, id: RegionId) -> Option<&Region> {
        self.slot_of.get(&id).map(|&i| &self.regions[i])
    }

    /// Next tick's input for region `id`.
    pub fn input_mut(&mut self, id: RegionId) -> Option<&mut TickInput> {
        self.slot_of.get(&id).map(|&i| &mut self.inputs[i])
    }

    /// Steps every region once, in parallel on the current rayon pool, then routes each
    /// region's outgoing handoffs into next tick's inputs. What a region deferred (handoffs
    /// it had no room for, session events over its per-tick limit) goes back to it, ahead
    /// of anything new, so that nothing waits forever behind fresh arrivals. Handoffs into
    /// regions held elsewhere wait in [`LocalRegions::take_outbound`]. Returns the number of
    /// handoffs routed between local regions.
    pub fn step(&mut self) -> usize {
        self.step_durations
            .resize(self.regions.len(), Duration::ZERO);
        // Rayon's threads do not inherit the caller's span: each region's names it.
        let tick_span = tracing::Span::current();
        self.regions
            .par_iter_mut()
            .zip(self.inputs.par_iter_mut())
            .zip(self.step_durations.par_iter_mut())
            .for_each(|((region, input), duration)| {
                let _span = tracing::debug_span!(parent: &tick_span, "region", id = region.id().0)
                    .entered();
                let started = Instant::now();
                region.step(std::mem::take(input));
                *duration = started.elapsed();
            });
        for (region, input) in self.regions.iter().zip(&mut self.inputs) {
            let output = region.output();
            input.handoffs.extend_from_slice(&output.deferred_handoffs);
            input.sessions.extend_from_slice(&output.deferred_sessions);
        }
        let mut routed = 0;
        for region in &self.regions {
            for record in &region.output().handoffs {
                match self.slot_of.get(&record.to) {
                    Some(&slot) => {
                        self.inputs[slot].handoffs.push(*record);
                        routed += 1;
                    }
                    // Held by another node: the caller sends it on.
                    None => self.outbound.push(*record),
                }
            }
        }
        routed
    }

    /// Runs every region on `config` from its next step (a reloaded balance; the world
    /// must be the one the regions were made with).
    pub fn set_config(&mut self, config: Arc<Config>) {
        for region in &mut self.regions {
            region.set_config(config.clone());
        }
    }

    /// How long each region's last step took (measured at this IO edge, not by the
    /// simulation, which reads no clock).
    pub fn step_durations(&self) -> impl Iterator<Item = (RegionId, Duration)> + '_ {
        self.regions
            .iter()
            .map(Region::id)
            .zip(self.step_durations.iter().copied())
    }

    /// Handoffs into regions held elsewhere since the last call, oldest first.
    pub fn take_outbound(&mut self) -> Vec<HandoffRecord> {
        std::mem::take(&mut self.outbound)
    }

    /// Starts stepping `region` (taken at run time). The regions step together, at one
    /// tick: the newcomer skips forward to the node's tick, or (coming from a node that
    /// was ahead) the node's regions skip forward to its tick, as time passing with
    /// nothing happening.
    pub fn add(&mut self, mut region: Region) {
        let tick = self
            .regions
            .first()
            .map_or(region.tick(), Region::tick)
            .max(region.tick());
        region.skip_to(tick);
        for held in &mut self.regions {
            held.skip_to(tick);
        }
        self.slot_of.insert(region.id(), self.regions.len());
        self.regions.push(region);
        self.inputs.push(TickInput::default());
        self.step_durations.push(Duration::ZERO);
    }

    /// `region`, to change between steps.
    pub fn region_mut(&mut self, id: RegionId) -> Option<&mut Region> {
        let slot = *self.slot_of.get(&id)?;
        self.regions.get_mut(slot)
    }

    /// Stops holding `region` (its lease was lost): it is no longer stepped. Returns
    /// whether it was held.
    pub fn remove(&mut self, region: RegionId) -> bool {
        self.remove_with_input(region).is_some()
    }

    /// Stops holding `region`, returning the input queued for its next step (handoffs on
    /// their way in), or `None` if it was not held.
    pub fn remove_with_input(&mut self, region: RegionId) -> Option<TickInput> {
        let slot = self.slot_of.remove(&region)?;
        self.regions.remove(slot);
        let input = self.inputs.remove(slot);
        if slot < self.step_durations.len() {
            self.step_durations.remove(slot);
        }
        for (i, r) in self.regions.iter().enumerate() {
            self.slot_of.insert(r.id(), i);
        }
        Some(input)
    }

    /// Whether `player`'s avatar is in one of the regions, or on its way between two.
    pub fn has_avatar(&self, player: tessera_shared::ids::PlayerId) -> bool {
        let avatar = tessera_shared::ids::NetId::of_player(player);
        self.regions.iter().any(|r| r.position_of(avatar).is_some())
            || self
                .inputs
                .iter()
                .any(|i| i.handoffs.iter().any(|h| h.entity.player == Some(player)))
    }

    /// Handoffs routed but not yet applied: entities between two regions.
    pub fn in_flight(&self) -> usize {
        self.inputs.iter().map(|i| i.handoffs.len()).sum()
    }

    /// The ids of the regions, in stepping order.
    pub fn ids(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.regions.iter().map(Region::id)
    }

    /// Players and entities over all regions.
    pub fn counts(&self) -> (usize, usize) {
        self.regions.iter().fold((0, 0), |(p, e), r| {
            let c = r.counts();
            (p + c.players, e + c.entities)
        })
    }

    /// One hash over every region's [`Region::world_hash`], in region id order.
    pub fn world_hash(&mut self) -> u64 {
        let mut h = Fnv1a::new();
        for region in &mut self.regions {
            h.u64(region.world_hash());
        }
        h.finish()
    }
}
