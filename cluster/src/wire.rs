//! The bytes one node sends another through the bus: a handoff record as mail, a region's
//! border entities as a ghost update. Both are bincode through the protocol codec (explicit
//! options, a size limit on every decode); decoding untrusted bytes returns `None`, never
//! panics (fuzzed: `fuzz/fuzz_targets/cluster_wire.rs`).

use serde::{Deserialize, Serialize};
use tessera_regions::io::{EntityState, EntityView, HandoffRecord};
use tessera_shared::ids::{HandoffId, NetId, PlayerId, RegionId};
use tessera_shared::math::Vec2;
use tessera_shared::protocol::codec;

/// Largest encoded handoff record.
pub const HANDOFF_BYTES_MAX: usize = 256;
/// Largest encoded ghost update (one region's border entities of one tick).
pub const GHOSTS_BYTES_MAX: usize = 256 * 1024;
/// Most entities one region's ghost update carries (about 20 bytes each).
pub const GHOSTS_PER_REGION_MAX: usize = 4_096;

/// The wire form of a [`HandoffRecord`].
#[derive(Serialize, Deserialize)]
struct WireHandoff {
    id: u64,
    from: u32,
    to: u32,
    tick: u64,
    entity: u64,
    archetype: u16,
    player: Option<u64>,
    position: [f32; 2],
    velocity: [f32; 2],
    health: f32,
    cooldown_ticks: u32,
    last_input_seq: u32,
}

/// The wire form of one ghost.
#[derive(Serialize, Deserialize)]
struct WireGhost {
    id: u64,
    archetype: u16,
    position: [f32; 2],
    health: f32,
}

/// The bus's idempotency key of a handoff's mail.
pub fn handoff_key(id: HandoffId) -> String {
    format!("handoff-{}", id.0)
}

/// Encodes a handoff for the bus.
pub fn encode_handoff(record: &HandoffRecord) -> Vec<u8> {
    let e = &record.entity;
    let wire = WireHandoff {
        id: record.id.0,
        from: record.from.0,
        to: record.to.0,
        tick: record.tick,
        entity: e.id.0,
        archetype: e.archetype,
        player: e.player.map(|p| p.0),
        position: [e.position.x, e.position.y],
        velocity: [e.velocity.x, e.velocity.y],
        health: e.health,
        cooldown_ticks: e.cooldown_ticks,
        last_input_seq: e.last_input_seq,
    };
    codec::encode(&wire, HANDOFF_BYTES_MAX).expect("a handoff record fits its limit")
}

/// Decodes a handoff from the bus; `None` for bytes that are not one. (The region checks
/// the values themselves: finiteness, bounds, archetype.)
pub fn decode_handoff(bytes: &[u8]) -> Option<HandoffRecord> {
    let w: WireHandoff = codec::decode(bytes, HANDOFF_BYTES_MAX).ok()?;
    Some(HandoffRecord {
        id: HandoffId(w.id),
        from: RegionId(w.from),
        to: RegionId(w.to),
        tick: w.tick,
        entity: EntityState {
            id: NetId(w.entity),
            archetype: w.archetype,
            player: w.player.map(PlayerId),
            position: Vec2::new(w.position[0], w.position[1]),
            velocity: Vec2::new(w.velocity[0], w.velocity[1]),
            health: w.health,
            cooldown_ticks: w.cooldown_ticks,
            last_input_seq: w.last_input_seq,
        },
    })
}

/// Encodes a region's ghosts for the bus (at most [`GHOSTS_PER_REGION_MAX`]; the rest
/// are left out).
pub fn encode_ghosts(views: &[EntityView]) -> Vec<u8> {
    let wire: Vec<WireGhost> = views
        .iter()
        .take(GHOSTS_PER_REGION_MAX)
        .map(|v| WireGhost {
            id: v.id.0,
            archetype: v.archetype,
            position: [v.position.x, v.position.y],
            health: v.health,
        })
        .collect();
    codec::encode(&wire, GHOSTS_BYTES_MAX)
        .expect("GHOSTS_PER_REGION_MAX ghosts fit GHOSTS_BYTES_MAX")
}

/// Decodes a region's ghosts; `None` for bytes that are not, or hold a number that is not
/// finite.
pub fn decode_ghosts(bytes: &[u8]) -> Option<Vec<EntityView>> {
    let wire: Vec<WireGhost> = codec::decode(bytes, GHOSTS_BYTES_MAX).ok()?;
    if wire.len() > GHOSTS_PER_REGION_MAX {
        return None;
    }
    let views: Vec<EntityView> = wire
        .into_iter()
        .map(|g| EntityView {
            id: NetId(g.id),
            archetype: g.archetype,
            position: Vec2::new(g.position[0], g.position[1]),
            health: g.health,
        })
        .collect();
    let finite = views
        .iter()
        .all(|v| v.position.is_finite() && v.health.is_finite());
    finite.then_some(views)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_records_round_trip_and_garbage_is_refused() {
        let record = HandoffRecord {
            id: HandoffId(99),
            from: RegionId(1),
            to: RegionId(2),
            tick: 1234,
            entity: EntityState {
                id: NetId::of_player(PlayerId(5)),
                archetype: 0,
                player: Some(PlayerId(5)),
                position: Vec2::new(1024.5, 3.0),
                velocity: Vec2::new(-1.0, 0.5),
                health: 77.0,
                cooldown_ticks: 3,
                last_input_seq: 410,
            },
        };
        assert_eq!(decode_handoff(&encode_handoff(&record)), Some(record));
        assert_eq!(decode_handoff(b"not a handoff"), None);
        assert_eq!(decode_handoff(&[]), None);
    }

    #[test]
    fn ghosts_round_trip_and_non_finite_values_are_refused() {
        let views = vec![EntityView {
            id: NetId(7),
            archetype: 2,
            position: Vec2::new(1020.0, 5.5),
            health: 40.0,
        }];
        assert_eq!(decode_ghosts(&encode_ghosts(&views)), Some(views.clone()));
        let mut bad = views;
        bad[0].health = f32::NAN;
        assert_eq!(decode_ghosts(&encode_ghosts(&bad)), None);
        assert_eq!(decode_ghosts(b"garbage"), None);
    }
}
