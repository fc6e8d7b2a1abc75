//! Deterministic scripted players, for `tessera sim`, the tick benches and the determinism
//! tests: each walks a straight heading that changes every few seconds and attacks the
//! first visible entity in reach. Same seed, same inputs.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tessera_shared::ids::{NetId, PlayerId};
use tessera_shared::math::{Aabb, Vec2};

use crate::io::{EntityView, PlayerInput};

/// How often a bot picks a new heading: every 40 to 100 ticks.
const TURN_TICKS_MIN: u64 = 40;
const TURN_TICKS_SPAN: u32 = 60;

/// One scripted player.
#[derive(Clone, Debug)]
struct Bot {
    player: PlayerId,
    seq: u32,
    heading: Vec2,
    next_turn_tick: u64,
}

/// A crowd of scripted players with their own seeded random stream.
#[derive(Clone, Debug)]
pub struct ScriptedPlayers {
    bots: Vec<Bot>,
    rng: ChaCha8Rng,
}

impl ScriptedPlayers {
    /// `n` bots with player ids `first_id..first_id + n`.
    pub fn new(n: usize, first_id: u64, seed: u64) -> ScriptedPlayers {
        let bots = (0..n as u64)
            .map(|i| Bot {
                player: PlayerId(first_id + i),
                seq: 0,
                heading: Vec2::ZERO,
                next_turn_tick: 0,
            })
            .collect();
        ScriptedPlayers {
            bots,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_B075),
        }
    }

    /// The bots' player ids, in order.
    pub fn players(&self) -> impl Iterator<Item = PlayerId> + '_ {
        self.bots.iter().map(|b| b.player)
    }

    /// Number of bots.
    pub fn len(&self) -> usize {
        self.bots.len()
    }

    /// True if there are no bots.
    pub fn is_empty(&self) -> bool {
        self.bots.is_empty()
    }

    /// The input of bot `idx` for `tick`: a step of `step_m` metres along its heading, and
    /// an attack on the first of `visible` within `reach_m` of `own_position`.
    pub fn input<'a>(
        &mut self,
        idx: usize,
        tick: u64,
        step_m: f32,
        own_position: Option<Vec2>,
        visible: impl IntoIterator<Item = &'a EntityView>,
        reach_m: f32,
    ) -> PlayerInput {
        let rng = &mut self.rng;
        let bot = &mut self.bots[idx];
        if tick >= bot.next_turn_tick {
            bot.heading = random_unit(rng);
            let span = (u64::from(rng.next_u32()) * u64::from(TURN_TICKS_SPAN)) >> 32;
            bot.next_turn_tick = tick + TURN_TICKS_MIN + span;
        }
        bot.seq += 1;
        let attack = own_position.and_then(|own| {
            visible
                .into_iter()
                .find(|v| v.health > 0.0 && v.position.distance_squared(own) <= reach_m * reach_m)
                .map(|v| v.id)
        });
        PlayerInput {
            player: bot.player,
            seq: bot.seq,
            move_m: bot.heading * step_m,
            attack,
        }
    }

    /// A random point in `bounds`, from the bots' own stream (to place them at login).
    pub fn random_point(&mut self, bounds: &Aabb) -> Vec2 {
        let size = bounds.size();
        let x = (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        let y = (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        bounds.clamp(bounds.min + Vec2::new(size.x * x, size.y * y))
    }

    /// The avatar id of bot `idx`.
    pub fn avatar(&self, idx: usize) -> NetId {
        NetId::of_player(self.bots[idx].player)
    }
}

/// A uniformly distributed direction, by rejection sampling in the unit square (no
/// trigonometry, so bit-identical everywhere). Falls back to east after 64 rejections,
/// which happens with probability below 1e-40.
fn random_unit(rng: &mut ChaCha8Rng) -> Vec2 {
    for _ in 0..64 {
        let x = (rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
        let y = (rng.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
        let len_sq = x * x + y * y;
        if len_sq > 1e-4 && len_sq <= 1.0 {
            let len = len_sq.sqrt();
            return Vec2::new(x / len, y / len);
        }
    }
    Vec2::new(1.0, 0.0)
}
