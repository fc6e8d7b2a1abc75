//! [`Region`]: one region's world and schedule, stepped one tick at a time.

use bevy_ecs::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use tessera_shared::config::{Config, RegionDef};
use tessera_shared::ids::{HandoffId, NetId, PlayerId, RegionId};
use tessera_shared::math::{Aabb, Vec2};

use crate::ai::{AiPlugin, AiSystems};
use crate::border::{AppliedHandoffs, BorderPlugin, BorderSystems};
use crate::combat::{CombatPlugin, CombatSystems};
use crate::components::*;
use crate::error::RegionError;
use crate::grid::{GridPlugin, GridSystems, SpatialIndex};
use crate::hash::Fnv1a;
use crate::inputs::{InputsPlugin, InputsSystems};
use crate::interest::{InterestPlugin, InterestSystems, Observer};
use crate::io::{HandoffRecord, Inbox, TickInput, TickOutput};
use crate::life::{LifePlugin, LifeSystems, Population};
use crate::movement::{MovementPlugin, MovementSystems};
use crate::plugin::RegionPlugin;
use crate::resources::{Directory, Mint, RegionInfo, SimConfig, SimRng, TickClock};
use crate::snapshot::{
    CellLayout, FORMAT_VERSION, META_CELL, NpcRecord, Reader, RestoreStats, SnapshotDelta,
    SnapshotEncoder, SnapshotError, SnapshotRecords, decode_npcs, npc_components,
};

/// One region's simulation: a bevy_ecs [`World`] and the [`Schedule`] that steps it.
///
/// Deterministic: the same definition, config, seed and sequence of [`TickInput`]s give
/// the same [`Region::world_hash`] after every tick, on any machine. Single-threaded inside;
/// run many regions in parallel (they share nothing but the read-only config).
pub struct Region {
    world: World,
    schedule: Schedule,
    id: RegionId,
    /// The world's change tick at the last capture; `None` before the first (and after a
    /// restore: the next capture takes everything as changed).
    captured_at: Option<bevy_ecs::change_detection::Tick>,
    /// Its own encoder, until [`Region::take_snapshot_encoder`] hands it out.
    encoder: Option<SnapshotEncoder>,
}

/// Entity counts of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionCounts {
    /// Player avatars.
    pub players: usize,
    /// All entities (players included).
    pub entities: usize,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("id", &self.id)
            .field("tick", &self.tick())
            .finish_non_exhaustive()
    }
}

impl Region {
    /// A region of `config`'s world, with its NPC population queued to spawn on the first
    /// tick. `seed` feeds the region's random number generator.
    pub fn new(def: &RegionDef, config: Arc<Config>, seed: u64) -> Result<Region, RegionError> {
        let table = &config.balance.spawn_tables[def.spawn_table];
        let mut population = Population::new(table.entries.len());
        for (entry_idx, entry) in table.entries.iter().enumerate() {
            let entry_idx = u16::try_from(entry_idx).expect("spawn table size is validated");
            for _ in 0..entry.count {
                population.schedule(1, entry_idx);
            }
        }
        Region::build(def, config, SimRng::new(seed, def.id), population)
    }

    /// A new region (as [`Region::new`]) whose clock starts at `tick` instead of 0, to
    /// join regions that are already running (restored from snapshots): regions of one
    /// node step together, at one tick.
    pub fn new_at(
        def: &RegionDef,
        config: Arc<Config>,
        seed: u64,
        tick: u64,
    ) -> Result<Region, RegionError> {
        let mut region = Region::new(def, config, seed)?;
        region.world.resource_mut::<TickClock>().tick = tick;
        Ok(region)
    }

    /// The region `def` of `config`'s world as of its stored snapshot `cells` (every cell
    /// of the last commit, [`META_CELL`] included; see [`crate::snapshot`]). `seed` is not
    /// needed: the random stream's state is part of the snapshot.
    ///
    /// NPCs the current config no longer fits are left out and counted
    /// ([`RestoreStats::dropped`]); their spawn-table slots refill. Corrupt data is an
    /// error, never a panic. The first [`Region::capture_snapshot`] after a restore
    /// rewrites every cell (and deletes stored cells the current layout does not have).
    pub fn restore(
        def: &RegionDef,
        config: Arc<Config>,
        cells: &BTreeMap<u32, Vec<u8>>,
    ) -> Result<(Region, RestoreStats), RegionError> {
        let meta = cells.get(&META_CELL).ok_or(SnapshotError::MissingMeta)?;
        let n_entries = config
            .balance
            .spawn_tables
            .get(def.spawn_table)
            .map_or(0, |t| t.entries.len());
        let mut r = Reader::new(META_CELL, meta)?;
        let tick = r.u64()?;
        let rng = SimRng::from_state(r.array_of::<32>()?, r.u64()?, r.u128()?);
        let mint = Mint {
            next_entity_seq: r.u64()?,
            next_handoff_seq: r.u64()?,
            epoch: 0,
        };
        let mut population = Population::decode(&mut r, n_entries)?;
        let n_applied = r.count(8)?;
        let mut applied = AppliedHandoffs::default();
        for _ in 0..n_applied {
            applied.insert(HandoffId(r.u64()?));
        }
        r.finish()?;

        let mut region = Region::build(def, config.clone(), rng, Population::default())?;
        region.world.resource_mut::<TickClock>().tick = tick;
        *region.world.resource_mut::<Mint>() = mint;
        *region.world.resource_mut::<AppliedHandoffs>() = applied;
        let mut stats = RestoreStats::default();
        let bounds = def.bounds;
        let archetypes = config.balance.archetypes.len();
        for (&cell, bytes) in cells.range(..META_CELL) {
            for npc in decode_npcs(cell, bytes)? {
                let fits = usize::from(npc.identity.archetype) < archetypes
                    && bounds.contains(npc.position)
                    && npc.spawn_entry.is_none_or(|e| usize::from(e) < n_entries);
                if region
                    .world
                    .resource::<Directory>()
                    .by_net_id
                    .contains_key(&npc.identity.id)
                {
                    stats.dropped += 1;
                    continue;
                }
                if !fits {
                    // Its spawn-table slot, if it still exists, refills next tick.
                    stats.dropped += 1;
                    if let Some(entry) = npc.spawn_entry.filter(|&e| usize::from(e) < n_entries) {
                        let alive = &mut population.alive[usize::from(entry)];
                        *alive = alive.saturating_sub(1);
                        population.schedule(tick + 1, entry);
                    }
                    continue;
                }
                let entity = region.world.spawn(npc_components(&npc)).id();
                region
                    .world
                    .resource_mut::<Directory>()
                    .by_net_id
                    .insert(npc.identity.id, entity);
                stats.npcs += 1;
            }
        }
        *region.world.resource_mut::<Population>() = population;
        if let Some(encoder) = region.encoder.as_mut() {
            encoder.restored_from(cells.keys().copied());
        }
        Ok((region, stats))
    }

    fn build(
        def: &RegionDef,
        config: Arc<Config>,
        rng: SimRng,
        population: Population,
    ) -> Result<Region, RegionError> {
        if !config.world.regions.iter().any(|r| r.id == def.id) {
            return Err(RegionError::UnknownRegion(def.id));
        }
        let mut world = World::new();
        let info = RegionInfo {
            def: def.clone(),
            world_bounds: Aabb::new(Vec2::ZERO, config.world.size_m),
        };
        world.insert_resource(SpatialIndex::new(&info, config.world.cell_size_m)?);
        world.insert_resource(TickClock::new(config.world.tick_hz));
        world.insert_resource(rng);
        world.insert_resource(population);
        let encoder = SnapshotEncoder::new(CellLayout::new(def.bounds, config.world.cell_size_m));
        world.insert_resource(info);
        world.insert_resource(SimConfig(config));
        world.init_resource::<Directory>();
        world.init_resource::<Mint>();
        world.init_resource::<Inbox>();
        world.init_resource::<TickOutput>();

        let mut schedule = Schedule::default();
        // The tick's phases, in order (ARCHITECTURE.md, "Data flow in one tick").
        schedule.configure_sets(
            (
                BorderSystems::Intake,
                InputsSystems,
                AiSystems,
                MovementSystems,
                CombatSystems,
                LifeSystems,
                BorderSystems::Detect,
                GridSystems,
                InterestSystems,
            )
                .chain(),
        );
        let plugins: [&dyn RegionPlugin; 8] = [
            &BorderPlugin,
            &InputsPlugin,
            &AiPlugin,
            &MovementPlugin,
            &CombatPlugin,
            &LifePlugin,
            &GridPlugin,
            &InterestPlugin,
        ];
        for plugin in plugins {
            plugin.build(&mut world, &mut schedule);
        }
        Ok(Region {
            world,
            schedule,
            id: def.id,
            captured_at: None,
            encoder: Some(encoder),
        })
    }

    /// Sets the fencing epoch of the holding that simulates the region from now on (the
    /// lease's, or one past the last snapshot's): handoff ids minted from the next step
    /// carry it, so that a region restored from a snapshot never reissues an id its
    /// previous holding minted after that snapshot (see [`Mint::handoff`]).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.world.resource_mut::<Mint>().epoch = epoch;
    }

    /// The fencing epoch of the holding that simulates the region (see
    /// [`Region::set_epoch`]).
    pub fn epoch(&self) -> u64 {
        self.world.resource::<Mint>().epoch
    }

    /// Moves the region's clock forward to `tick` (a region taken at run time joins the
    /// node's tick): time passes without anything happening; due timers (respawns, spawn
    /// refills) fire on the next step. An earlier `tick` changes nothing.
    pub fn skip_to(&mut self, tick: u64) {
        let mut clock = self.world.resource_mut::<TickClock>();
        clock.tick = clock.tick.max(tick);
    }

    /// Takes every player avatar out of the region, each as a handoff into `to` (carried
    /// over the bus like a border crossing, applied at most once): the region is moving to
    /// another node. Call between steps. The dead travel revived (full health, where they
    /// lay): a handoff carries only the living.
    pub fn evacuate(&mut self, to: RegionId) -> Vec<HandoffRecord> {
        crate::border::evacuate(&mut self.world, to)
    }

    /// Runs the region on `config` from its next step: a reloaded balance (stats,
    /// formulas, spawn counts). The world and the lists entities refer to by index
    /// (archetypes, spawn tables) must be the ones the region was made with.
    pub fn set_config(&mut self, config: Arc<Config>) {
        let running = &self.world.resource::<SimConfig>().0;
        debug_assert!(
            running.world == config.world
                && running.balance.archetypes.len() == config.balance.archetypes.len()
                && running.balance.spawn_tables.len() == config.balance.spawn_tables.len(),
            "a reload must keep the world, archetypes and spawn tables"
        );
        self.world.insert_resource(SimConfig(config));
    }

    /// The region's id.
    pub fn id(&self) -> RegionId {
        self.id
    }

    /// The last tick simulated (0 before the first step).
    pub fn tick(&self) -> u64 {
        self.world.resource::<TickClock>().tick
    }

    /// Simulates one tick with `input` and returns what it produced. The output is reused
    /// by the next step: copy out what you keep.
    pub fn step(&mut self, input: TickInput) -> &TickOutput {
        let tick = {
            let mut clock = self.world.resource_mut::<TickClock>();
            clock.tick += 1;
            clock.tick
        };
        self.world.resource_mut::<TickOutput>().clear(tick);
        self.world.resource_mut::<Inbox>().0 = input;
        self.schedule.run(&mut self.world);
        self.world.clear_trackers();
        self.world.check_change_ticks();
        self.world.resource::<TickOutput>()
    }

    /// The world, for the crate's tests to inspect.
    #[cfg(test)]
    pub(crate) fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The output of the last [`Region::step`] (empty before the first).
    pub fn output(&self) -> &TickOutput {
        self.world.resource::<TickOutput>()
    }

    /// The cells of the region's durable state that changed since the last capture (all
    /// of them at the first), to be committed to a snapshot store in order: both halves
    /// of a capture, [`Region::capture_records`] and [`SnapshotEncoder::encode`], here.
    /// See [`crate::snapshot`] for what is and is not saved.
    ///
    /// # Panics
    /// If the region's encoder was taken with [`Region::take_snapshot_encoder`].
    pub fn capture_snapshot(&mut self) -> SnapshotDelta {
        let records = self.capture_records();
        self.encoder
            .as_mut()
            .expect("capture_snapshot after take_snapshot_encoder")
            .encode(records)
    }

    /// The region's snapshot encoder, to run [`SnapshotEncoder::encode`] off the tick's
    /// thread (fed this region's [`Region::capture_records`] in order). `None` once taken.
    pub fn take_snapshot_encoder(&mut self) -> Option<SnapshotEncoder> {
        self.encoder.take()
    }

    /// The tick-thread half of a capture: every NPC, copied with whether it changed since
    /// the last capture, and the region-wide state. Call between steps; one walk over the
    /// NPCs, no per-tick bookkeeping.
    pub fn capture_records(&mut self) -> SnapshotRecords {
        let tick = self.tick();
        let this_run = self.world.change_tick();
        let mut meta = Vec::with_capacity(256);
        meta.push(FORMAT_VERSION);
        meta.extend_from_slice(&tick.to_le_bytes());
        let (seed, stream, word_pos) = self.world.resource::<SimRng>().state();
        meta.extend_from_slice(&seed);
        meta.extend_from_slice(&stream.to_le_bytes());
        meta.extend_from_slice(&word_pos.to_le_bytes());
        let mint = *self.world.resource::<Mint>();
        meta.extend_from_slice(&mint.next_entity_seq.to_le_bytes());
        meta.extend_from_slice(&mint.next_handoff_seq.to_le_bytes());
        self.world.resource::<Population>().encode_into(&mut meta);
        let applied = self.world.resource::<AppliedHandoffs>();
        meta.extend_from_slice(&(applied.ids().count() as u32).to_le_bytes());
        for id in applied.ids() {
            meta.extend_from_slice(&id.0.to_le_bytes());
        }

        let since = self.captured_at;
        let changed = |t: bevy_ecs::change_detection::Tick| {
            since.is_none_or(|last| t.is_newer_than(last, this_run))
        };
        let mut query = self.world.query_filtered::<(
            &Identity,
            Ref<Position>,
            Ref<Velocity>,
            Ref<Health>,
            Ref<AttackCooldown>,
            Ref<Npc>,
        ), Without<Player>>();
        let npcs = query
            .iter(&self.world)
            .map(|(identity, position, velocity, health, cooldown, npc)| {
                let is_changed = changed(position.last_changed())
                    || changed(velocity.last_changed())
                    || changed(health.last_changed())
                    || changed(cooldown.last_changed())
                    || changed(npc.last_changed());
                let record = NpcRecord {
                    identity: *identity,
                    position: position.0,
                    velocity: velocity.0,
                    health: health.0,
                    cooldown: *cooldown,
                    home: npc.home,
                    brain: npc.brain,
                    awake: npc.awake,
                    spawn_entry: npc.spawn_entry,
                };
                (record, is_changed)
            })
            .collect();
        self.captured_at = Some(this_run);
        SnapshotRecords::new(tick, npcs, meta)
    }

    /// Player and entity counts.
    pub fn counts(&self) -> RegionCounts {
        let directory = self.world.resource::<Directory>();
        RegionCounts {
            players: directory.by_player.len(),
            entities: directory.by_net_id.len(),
        }
    }

    /// Spawns an NPC outside the spawn tables (scripted or admin spawns; never respawned).
    pub fn spawn_npc(&mut self, archetype: u16, home: Vec2) -> Result<NetId, RegionError> {
        let config = self.world.resource::<SimConfig>().0.clone();
        let info = self.world.resource::<RegionInfo>().def.clone();
        let count = config.balance.archetypes.len();
        let arch = config
            .balance
            .archetypes
            .get(usize::from(archetype))
            .ok_or(RegionError::UnknownArchetype {
                index: archetype,
                count,
            })?;
        if !home.is_finite() || !info.bounds.contains(home) {
            return Err(RegionError::InvalidPosition {
                region: info.id,
                position: home,
            });
        }
        let max = config.world.limits.entities_per_region_max;
        if self.counts().entities >= max as usize {
            return Err(RegionError::Full {
                region: info.id,
                max,
            });
        }
        let id = self
            .world
            .resource_mut::<Mint>()
            .entity(info.id)
            .ok_or(RegionError::IdsExhausted(info.id))?;
        let entity = self
            .world
            .spawn(crate::spawn::npc_bundle(id, archetype, arch, home, None))
            .id();
        self.world
            .resource_mut::<Directory>()
            .by_net_id
            .insert(id, entity);
        Ok(id)
    }

    /// The position and health of entity `id`, with one lookup, if it is in this region.
    pub fn position_and_health(&self, id: NetId) -> Option<(Vec2, f32)> {
        let entity = *self.world.resource::<Directory>().by_net_id.get(&id)?;
        let entity = self.world.get_entity(entity).ok()?;
        Some((entity.get::<Position>()?.0, entity.get::<Health>()?.0))
    }

    /// The entities inside `area` as of the last step, as observers see them, appended
    /// to `out` in grid order (for ghosts: what a neighbouring region's players may see).
    pub fn views_in(&self, area: Aabb, out: &mut Vec<crate::io::EntityView>) {
        let index = self.world.resource::<SpatialIndex>();
        index.grid.for_each_in_box(area, |position, item| {
            let entry = index.entry(&item);
            out.push(crate::io::EntityView {
                id: entry.id,
                archetype: item.archetype,
                position,
                health: entry.health,
            });
        });
    }

    /// Every entity's position as of the last step, with the player it is the avatar of
    /// (`None` for NPCs), in grid order: one pass over the spatial index (the operators'
    /// map samples it).
    pub fn for_each_position(&self, mut f: impl FnMut(Vec2, Option<PlayerId>)) {
        let index = self.world.resource::<SpatialIndex>();
        for (&position, item) in index.grid.positions().iter().zip(index.grid.values()) {
            let player = if item.is_player {
                index.entry(item).id.player()
            } else {
                None
            };
            f(position, player);
        }
    }

    /// The players with an avatar in this region, in no particular order.
    pub fn players(&self) -> impl Iterator<Item = PlayerId> + '_ {
        self.world.resource::<Directory>().by_player.keys().copied()
    }

    /// The position of entity `id`, if it is in this region.
    pub fn position_of(&self, id: NetId) -> Option<Vec2> {
        let entity = *self.world.resource::<Directory>().by_net_id.get(&id)?;
        self.world.get::<Position>(entity).map(|p| p.0)
    }

    /// The health of entity `id`, if it is in this region.
    pub fn health_of(&self, id: NetId) -> Option<f32> {
        let entity = *self.world.resource::<Directory>().by_net_id.get(&id)?;
        self.world.get::<Health>(entity).map(|h| h.0)
    }

    /// A digest of the complete simulation state: clock, RNG position, id counters, spawn
    /// bookkeeping and every entity's components (observers' visible sets included), in
    /// id order. Two regions with equal hashes
    /// will produce equal futures from equal inputs.
    pub fn world_hash(&mut self) -> u64 {
        let mut h = Fnv1a::new();
        h.u64(self.tick());
        let word_pos = self.world.resource::<SimRng>().word_pos();
        h.bytes(&word_pos.to_le_bytes());
        let mint = *self.world.resource::<Mint>();
        h.u64(mint.next_entity_seq);
        h.u64(mint.next_handoff_seq);
        self.world.resource::<Population>().hash_into(&mut h);
        // Which redeliveries would be ignored is part of the future too.
        for id in self
            .world
            .resource::<crate::border::AppliedHandoffs>()
            .ids()
        {
            h.u64(id.0);
        }
        let mut rows: Vec<_> = self
            .world
            .query::<(
                &Identity,
                &Position,
                &Velocity,
                &Health,
                &AttackCooldown,
                Option<&Npc>,
                Option<(&Player, &Observer)>,
            )>()
            .iter(&self.world)
            .map(|(i, p, v, hp, cd, npc, player)| {
                (
                    *i,
                    *p,
                    *v,
                    *hp,
                    *cd,
                    npc.cloned(),
                    player.map(|(p, o)| (p.clone(), o.clone())),
                )
            })
            .collect();
        rows.sort_unstable_by_key(|row| row.0.id);
        for (identity, position, velocity, health, cooldown, npc, player) in rows {
            h.u64(identity.id.0);
            h.u32(u32::from(identity.archetype));
            h.f32(position.0.x);
            h.f32(position.0.y);
            h.f32(velocity.0.x);
            h.f32(velocity.0.y);
            h.f32(health.0);
            h.u64(cooldown.ready_tick);
            if let Some(npc) = npc {
                h.f32(npc.home.x);
                h.f32(npc.home.y);
                h.u32(u32::from(npc.awake));
                match npc.brain {
                    Brain::Idle { until_tick } => {
                        h.u32(0);
                        h.u64(until_tick);
                    }
                    Brain::Wander { to } => {
                        h.u32(1);
                        h.f32(to.x);
                        h.f32(to.y);
                    }
                    Brain::Chase { target } => {
                        h.u32(2);
                        h.u64(target.0);
                    }
                    Brain::Return => h.u32(3),
                }
            }
            if let Some((player, observer)) = player {
                h.u64(player.player.0);
                h.u32(player.last_input_seq);
                h.u64(player.respawn_tick.map_or(0, |t| t + 1));
                // What it sees shapes every future diff it is sent.
                h.u64(observer.n_visible() as u64);
                for id in observer.visible_ids() {
                    h.u64(id.0);
                }
            }
        }
        h.finish()
    }
}
