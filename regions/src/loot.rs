//! Loot: what an NPC killed by a player drops, rolled from its archetype's
//! `[loot.ARCHETYPE]` table (balance.toml).
//!
//! Each line is rolled on its own with a number drawn from a hash of the region, the
//! tick, the NPC's id and the line, not from the region's random stream ([`SimRng`]):
//! deterministic (a replay drops the same loot), the same after a snapshot restore (no
//! state to save), and a reload of the loot tables never changes how the rest of the world
//! evolves.
//!
//! [`SimRng`]: crate::resources::SimRng

use tessera_shared::config::{BalanceConfig, Loot};
use tessera_shared::ids::{NetId, RegionId};

use crate::hash::Fnv1a;

/// What one kill drops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Coins.
    pub coins: u64,
    /// (index into the balance's items, count), in the table's order, no zero counts.
    pub items: Vec<(usize, u32)>,
}

/// Rolls the loot of NPC `npc` of archetype `archetype` (an index into the balance's
/// archetypes), killed in `region` at `tick`. Nothing for an archetype without a table.
pub fn roll(
    balance: &BalanceConfig,
    region: RegionId,
    tick: u64,
    npc: NetId,
    archetype: usize,
) -> Drops {
    let mut drops = Drops::default();
    let Some(table) = balance.loot_of(archetype) else {
        return drops;
    };
    let level = balance.archetypes.get(archetype).map_or(1, |a| a.level);
    for (line, drop) in table.drops.iter().enumerate() {
        if unit(region, tick, npc, line) >= drop.chance {
            continue;
        }
        let n = drop.amount(level);
        if n == 0 {
            continue;
        }
        match drop.what {
            Loot::Coins => drops.coins += u64::from(n),
            Loot::Item(item) => drops.items.push((item, n)),
        }
    }
    drops
}

/// A number in `[0, 1)` with 24 bits of precision (exact in `f32`), fixed by its inputs:
/// FNV-1a of them, then a SplitMix64 finaliser so that every bit depends on every input.
fn unit(region: RegionId, tick: u64, npc: NetId, line: usize) -> f32 {
    let mut h = Fnv1a::new();
    h.bytes(b"tessera-loot");
    h.u32(region.0);
    h.u64(tick);
    h.u64(npc.0);
    h.u64(line as u64);
    let mut z = h.finish().wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_shared::config::Config;

    fn balance() -> BalanceConfig {
        Config::embedded_default().balance.clone()
    }

    fn archetype(b: &BalanceConfig, name: &str) -> usize {
        b.archetypes.iter().position(|a| a.name == name).unwrap()
    }

    #[test]
    fn rolls_are_deterministic_and_follow_the_chances() {
        let b = balance();
        let wolf = archetype(&b, "wolf");
        let pelt = b.item_index("wolf_pelt").unwrap();
        let (mut pelts, n) = (0, 10_000u64);
        for seq in 0..n {
            let npc = NetId::mint(RegionId(3), seq).unwrap();
            let drops = roll(&b, RegionId(3), 100, npc, wolf);
            assert_eq!(
                drops,
                roll(&b, RegionId(3), 100, npc, wolf),
                "the same roll"
            );
            // Coins: chance 1, 2 per level (wolves are level 2).
            assert_eq!(drops.coins, 4);
            pelts += drops.items.iter().filter(|(i, _)| *i == pelt).count();
        }
        // Chance 0.5: within 4 standard deviations (50 of 10,000).
        let expected = n as f64 * 0.5;
        assert!(
            (pelts as f64 - expected).abs() < 200.0,
            "{pelts} pelts of {n} wolves"
        );
    }

    #[test]
    fn rolls_differ_by_tick_npc_and_region() {
        let b = balance();
        let bandit = archetype(&b, "bandit");
        let npc = NetId::mint(RegionId(1), 7).unwrap();
        let all: Vec<Drops> = (0..64)
            .map(|t| roll(&b, RegionId(1 + t % 2), 1000 + t as u64 / 2, npc, bandit))
            .collect();
        // Potions drop with chance 0.2: over 64 rolls both outcomes appear.
        let with = all.iter().filter(|d| !d.items.is_empty()).count();
        assert!(with > 0 && with < 64, "{with}");
    }

    #[test]
    fn an_archetype_without_a_table_drops_nothing() {
        let b = balance();
        let adventurer = archetype(&b, "adventurer");
        let npc = NetId::mint(RegionId(1), 1).unwrap();
        assert_eq!(roll(&b, RegionId(1), 1, npc, adventurer), Drops::default());
        assert_eq!(roll(&b, RegionId(1), 1, npc, 10_000), Drops::default());
    }
}
