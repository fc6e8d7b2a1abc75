//! Each client's state budget: which of the changes to its view it is sent this tick
//! (PROTOCOL.md section 5, "Budget and priority").
//!
//! The view a client is sent (its encoder's snapshots) may lag the view as it is, the
//! *truth*: its region's interest with its avatar and ghosts. Every tick the differences
//! between the two are *candidates*: an entity that moved or whose health changed since
//! what the client was sent, and one that came into view. An entity that left the truth
//! is removed from the client's view at once (a byte or so: removals never wait).
//!
//! The client's bytes come from a token bucket: `[net] state_kbit_per_s` a second, added
//! each tick, holding at most [`BURST_TICKS`] ticks' worth (so a first view goes out at
//! once, and a burst of arrivals within a few ticks); each state takes what it really
//! weighs, and a delta at most what any connection's datagrams carry
//! (`DATAGRAM_PAYLOAD_BYTES_MIN`), so that states stay off streams unless a keyframe needs
//! one. When the whole next view fits what the bucket holds (priced by encoding it: the usual case), it is
//! sent as it is, exactly as without a budget. Otherwise candidates are taken by priority
//! until the estimate of their bytes fills the bucket; the others wait, and every tick a
//! candidate waits its priority grows by its weight, so far and slow entities get their
//! turn: none starves. Some candidates never wait: the avatar, whoever hit it or was hit
//! by it this tick, and a change that has waited `[net] state_staleness_ticks_max` ticks;
//! and each tick the oldest waiting changes go at the rate that keeps every one within
//! that bound, so they do not all reach it at once. Bounded staleness wins over the
//! budget: the bucket goes into debt and the ticks after send less (a debt of at most
//! [`BURST_TICKS`] ticks: beyond it, it is forgiven). A keyframe replaces the client's
//! view, so it keeps every entity the connection was sent (priced whole): nothing the
//! client shows vanishes for the budget.
//!
//! A candidate's weight each tick is its nearness to the avatar (8, 4, 2 or 1 for each
//! quarter of the leave radius) times its size: 1 plus the metres it moved since what the
//! client has (at most 8), plus 4 if its health or archetype changed; 9 for an entity
//! coming into view.
//!
//! Each candidate is priced by what it adds to the block against the baseline the client
//! acked: a change the client has not acked yet is repeated in every state until it is,
//! so what is in flight weighs on each state whatever is chosen, and a client with a long
//! round trip takes fewer new changes a tick.
//!
//! Cost: a client within its budget costs what it always did. Only a client over it keeps
//! its truth apart (one more copy of its view) and ranks its candidates: a partial
//! selection, linear in their number, and one more encoding.

use tessera_shared::config::StateBudgetConfig;
use tessera_shared::ids::NetId;
use tessera_shared::protocol::delta::{ViewBuilder, WireEntity, added_bytes, update_bytes};
use tessera_shared::protocol::limits::DATAGRAM_PAYLOAD_BYTES_MIN;
use tessera_shared::protocol::quantize::POSITION_UNITS_PER_M;

use super::NextView;

/// The bucket holds at most this many ticks of budget: what a client may be sent at once
/// (its first view, many entities coming into view) before the budget's rate applies.
pub(crate) const BURST_TICKS: i64 = 4;
/// Estimated bytes of an entity leaving view (its index in the removed section).
const REMOVED_BYTES: usize = 1;
/// Bytes of a state message besides its block: its tick, baseline tick and block length
/// (varints; ticks below 2^32).
const HEADER_BYTES: i64 = 13;
/// Size of an entity coming into view, in the weight (one more than the largest move).
const ENTERING_SIZE: u32 = 9;
/// Size added for a change of health or archetype, in the weight.
const HEALTH_SIZE: u32 = 4;
/// Largest move counted in the weight, in metres.
const MOVE_SIZE_MAX: u32 = 7;

/// What a client's state may cost, from `tessera.toml` and the world's tick rate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BudgetLimits {
    /// Bytes added to the bucket each tick.
    pub bytes_per_tick: i64,
    /// A change that has waited this many ticks is sent even over the budget.
    pub staleness_ticks_max: u16,
    /// The leave radius squared, in wire units squared: nearness is measured against it.
    pub reach2: i64,
}

impl BudgetLimits {
    pub(crate) fn new(budget: &StateBudgetConfig, tick_hz: u32, leave_radius_m: f32) -> Self {
        let reach = f64::from(leave_radius_m) * f64::from(POSITION_UNITS_PER_M);
        BudgetLimits {
            bytes_per_tick: i64::from(budget.bytes_per_tick(tick_hz)),
            staleness_ticks_max: budget.staleness_ticks_max.min(u32::from(u16::MAX)) as u16,
            reach2: (reach * reach) as i64,
        }
    }

    fn burst(&self) -> i64 {
        self.bytes_per_tick * BURST_TICKS
    }
}

/// A change the client has not been sent yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiting {
    id: NetId,
    /// Its weights summed over the ticks it waited.
    priority: u32,
    /// Ticks it has waited.
    waited: u16,
}

/// One client's bucket, and the changes it has waiting.
#[derive(Debug)]
pub(crate) struct ClientBudget {
    /// Bytes the client may still be sent; negative after a state over the budget.
    tokens: i64,
    /// The truth while changes wait (the client's view lags it); empty otherwise, when
    /// the client's view is the truth.
    truth: Vec<WireEntity>,
    /// The changes waiting, sorted by id; empty when the client's view is the truth.
    waiting: Vec<Waiting>,
    /// The longest any change sent in the last state had waited, in ticks.
    last_staleness: u16,
}

impl ClientBudget {
    /// A full bucket: a new client's first view goes out at once if it fits the burst.
    pub(crate) fn new(limits: &BudgetLimits) -> Self {
        ClientBudget {
            tokens: limits.burst(),
            truth: Vec::new(),
            waiting: Vec::new(),
            last_staleness: 0,
        }
    }

    /// Adds a tick's budget (before the tick's state is built).
    pub(crate) fn refill(&mut self, limits: &BudgetLimits) {
        self.tokens = (self.tokens + limits.bytes_per_tick).min(limits.burst());
    }

    /// Takes what the state just built weighs, in bytes. The debt is floored at
    /// [`BURST_TICKS`] ticks of budget: when what cannot wait (the staleness bound,
    /// keyframes, changes in flight on a long round trip) outweighs the budget for long,
    /// the budget yields rather than holding back every later change for as long as the
    /// debt took to build.
    pub(crate) fn spend(&mut self, bytes: usize, limits: &BudgetLimits) {
        self.tokens = (self.tokens - bytes as i64).max(-limits.burst());
    }

    /// Changes waiting.
    pub(crate) fn n_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The longest any change sent in the last state had waited, in ticks.
    pub(crate) fn last_staleness(&self) -> u16 {
        self.last_staleness
    }

    /// Drops what the client was sent: its view becomes the truth (a client away gets its
    /// view kept whole for its return).
    fn caught_up(&mut self) {
        self.waiting.clear();
        self.truth = Vec::new();
        self.last_staleness = 0;
    }
}

/// Scratch space of one encoding thread, reused across clients and ticks; each list is
/// bounded by the largest view.
#[derive(Debug, Default)]
pub(crate) struct BudgetScratch {
    truth: Vec<WireEntity>,
    slots: Vec<Slot>,
    candidates: Vec<Candidate>,
}

/// What becomes of one entity of the truth.
#[derive(Clone, Copy, Debug)]
struct Slot {
    state: SlotState,
    /// Its index in what the client was sent (`NOT_SENT`: coming into view).
    sent: u32,
    priority: u32,
    waited: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// The client has it as it is.
    Same,
    /// Sent as it is.
    Chosen,
    /// Waits: the client keeps what it has (or does not see it yet).
    Waits,
}

const NOT_SENT: u32 = u32::MAX;

/// A change that may wait, to be ranked.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    priority: u32,
    /// Ticks it has waited.
    waited: u16,
    cost: u32,
    /// Index in the truth (and in `slots`).
    index: u32,
}

/// The next view of one client within its budget, as a [`ViewBuilder`]: the truth built by
/// `view` from the previous truth, then what the client is sent of it.
pub(crate) struct Budgeted<'a> {
    /// Builds the truth.
    pub view: NextView<'a>,
    pub budget: &'a mut ClientBudget,
    pub scratch: &'a mut BudgetScratch,
    pub limits: BudgetLimits,
    /// The client's avatar (nearness is measured from it), if it is in the region.
    pub observer: Option<WireEntity>,
    /// Who hit the avatar or was hit by it this tick, sorted.
    pub fighting: &'a [NetId],
}

impl ViewBuilder for Budgeted<'_> {
    /// The whole truth (nothing is sent: the view of a client away, kept for its return).
    fn build(self, prev: &[WireEntity], next: &mut Vec<WireEntity>) {
        let truth_prev = if self.budget.waiting.is_empty() {
            prev
        } else {
            &self.budget.truth[..]
        };
        self.view.build(truth_prev, next);
        self.budget.caught_up();
    }

    fn build_priced(
        self,
        prev: &[WireEntity],
        prev_sent: bool,
        baseline: Option<&[WireEntity]>,
        next: &mut Vec<WireEntity>,
        price: &mut dyn FnMut(&[WireEntity]) -> usize,
    ) {
        let Budgeted {
            view,
            budget,
            scratch,
            limits,
            observer,
            fighting,
        } = self;
        // A delta takes at most what any connection's datagrams carry, whatever the
        // bucket holds: one larger would go on a stream of its own, slower and bounded per
        // connection (the protocol's DATAGRAM_BYTES_MAX is not enough: QUIC's own bytes
        // come off it until path MTU discovery raises it). Only a keyframe uses the
        // bucket's whole burst.
        let most = match baseline {
            Some(_) => budget.tokens.min(DATAGRAM_PAYLOAD_BYTES_MIN as i64),
            None => budget.tokens,
        };
        let room = most - HEADER_BYTES;
        scratch.truth.clear();
        if budget.waiting.is_empty() {
            // The client has the truth (or nothing, on a keyframe): if the whole next
            // view fits, it is sent as it is, exactly as without a budget.
            view.build(prev, next);
            if price(next) as i64 <= room {
                budget.last_staleness = 0;
                return;
            }
            scratch.truth.extend_from_slice(next);
            next.clear();
        } else {
            view.build(&budget.truth, &mut scratch.truth);
        }
        let (sent, baseline) = match baseline {
            Some(baseline) => (prev, baseline),
            // A keyframe replaces the client's view: what it shows stays in (each entity
            // priced whole, and brought up to date as it costs no more), or it would
            // vanish; anything new comes in by priority.
            None if prev_sent => (prev, &[][..]),
            // The client has none of it (a new connection): all of it comes in by
            // priority, nearest first.
            None => (&[][..], &[][..]),
        };
        let choice = Choice {
            limits: &limits,
            observer: observer.map(|o| o.position),
            avatar: observer.map(|o| o.id),
            fighting,
        };
        choice.select(sent, baseline, budget, scratch, room, next);
        price(next);
        budget.truth.clear();
        if budget.waiting.is_empty() {
            budget.truth.shrink_to_fit();
        } else {
            budget.truth.reserve_exact(scratch.truth.len());
            budget.truth.extend_from_slice(&scratch.truth);
        }
    }
}

/// One client's ranking of its candidates.
struct Choice<'a> {
    limits: &'a BudgetLimits,
    /// Where the avatar is, in wire units.
    observer: Option<[i32; 2]>,
    avatar: Option<NetId>,
    fighting: &'a [NetId],
}

impl Choice<'_> {
    /// Fills `next` (sorted by id) with the client's next view: of each entity of
    /// `scratch.truth`, its true value or, if its change waits, what the client has
    /// (`sent`) or nothing. Each choice is priced by what it adds to the block against
    /// `baseline`: a change already in flight (the client's view differs from the
    /// baseline there) is repeated anyway, so bringing it up to date costs next to
    /// nothing. Keeps the waiting changes in `budget`. `room` is the bytes the bucket
    /// holds; what the state takes whatever is chosen (removals, changes in flight,
    /// changes that cannot wait) comes off it first.
    fn select(
        &self,
        sent: &[WireEntity],
        baseline: &[WireEntity],
        budget: &mut ClientBudget,
        scratch: &mut BudgetScratch,
        room: i64,
        next: &mut Vec<WireEntity>,
    ) {
        let BudgetScratch {
            truth,
            slots,
            candidates,
        } = scratch;
        slots.clear();
        candidates.clear();
        // Estimated bytes of the block whatever the candidates: removals, what is in
        // flight, the changes that cannot wait and those that cost nothing more.
        let mut taken = 0i64;
        let mut staleness = 0u16;
        let (mut s, mut b, mut w, mut f) = (0usize, 0usize, 0usize, 0usize);
        let mut next_id = 0u64;
        for (i, t) in truth.iter().enumerate() {
            while sent.get(s).is_some_and(|e| e.id < t.id) {
                s += 1;
            }
            // A baseline entity out of the truth is out of the next view: removed.
            while baseline.get(b).is_some_and(|e| e.id < t.id) {
                taken += REMOVED_BYTES as i64;
                b += 1;
            }
            let old = sent.get(s).filter(|e| e.id == t.id);
            let base = baseline.get(b).filter(|e| e.id == t.id);
            s += usize::from(old.is_some());
            b += usize::from(base.is_some());
            let gap = t.id.0.saturating_sub(next_id);
            next_id = t.id.0.saturating_add(1);
            // Bytes of the block for this entity if the next view has `v` (or not it).
            let cost = |v: Option<&WireEntity>| -> i64 {
                (match (base, v) {
                    (Some(base), Some(v)) if base == v => 0,
                    (Some(base), Some(v)) => update_bytes(base, v),
                    (None, Some(v)) => added_bytes(gap, v),
                    (Some(_), None) => REMOVED_BYTES,
                    (None, None) => 0,
                }) as i64
            };
            let sent_index = old.map_or(NOT_SENT, |_| (s - 1) as u32);
            let kept = cost(old);
            if old == Some(t) {
                taken += kept;
                slots.push(Slot {
                    state: SlotState::Same,
                    sent: sent_index,
                    priority: 0,
                    waited: 0,
                });
                continue;
            }
            let extra = cost(Some(t)) - kept;
            while budget.waiting.get(w).is_some_and(|x| x.id < t.id) {
                w += 1;
            }
            let before = budget.waiting.get(w).filter(|x| x.id == t.id);
            while self.fighting.get(f).is_some_and(|&id| id < t.id) {
                f += 1;
            }
            let waited = before.map_or(0, |b| b.waited);
            let priority = before
                .map_or(0, |b| b.priority)
                .saturating_add(self.weight(old, t));
            // Saving bytes (back to the baseline's value, say) or never waiting. A change
            // that merely costs nothing more this tick (one in flight) still ranks: sent
            // again, it would stay in flight and weigh on the states after.
            let forced = extra < 0
                || waited >= self.limits.staleness_ticks_max
                || self.avatar == Some(t.id)
                || self.fighting.get(f) == Some(&t.id);
            let state = if forced {
                taken += kept + extra;
                staleness = staleness.max(waited);
                SlotState::Chosen
            } else {
                taken += kept;
                candidates.push(Candidate {
                    priority,
                    waited,
                    cost: extra.clamp(0, i64::from(u32::MAX)) as u32,
                    index: i as u32,
                });
                SlotState::Waits
            };
            slots.push(Slot {
                state,
                sent: sent_index,
                priority,
                waited,
            });
        }
        taken += ((baseline.len() - b) * REMOVED_BYTES) as i64;
        // The staleness quota: the oldest candidates, as many as sending that many every
        // tick brings each within the bound, so changes are spread over the ticks
        // instead of all reaching the bound together (and going over the budget at once).
        // Only candidates past half the bound count: younger ones have time (and a view
        // just over its budget, the usual case, then ranks its candidates once).
        let bound = self.limits.staleness_ticks_max.max(1);
        let aged = candidates.iter().filter(|c| c.waited >= bound / 2).count();
        let quota = candidates.len().div_ceil(usize::from(bound)).min(aged);
        if quota > 0 && quota < candidates.len() {
            candidates.select_nth_unstable_by(quota, |a, b| {
                b.waited
                    .cmp(&a.waited)
                    .then_with(|| b.priority.cmp(&a.priority))
                    .then_with(|| a.index.cmp(&b.index))
            });
        }
        let quota = quota.min(candidates.len());
        for c in &candidates[..quota] {
            taken += i64::from(c.cost);
        }
        let n_chosen = quota + choose(&mut candidates[quota..], room - taken);
        for c in &candidates[..n_chosen] {
            let slot = &mut slots[c.index as usize];
            slot.state = SlotState::Chosen;
            staleness = staleness.max(slot.waited);
        }
        budget.waiting.clear();
        if budget.waiting.capacity() > 2 * candidates.len() {
            // Caught up after a burst: memory held per client.
            budget.waiting.shrink_to(candidates.len());
        }
        next.reserve_exact(truth.len());
        for (t, slot) in truth.iter().zip(slots.iter()) {
            match slot.state {
                SlotState::Same | SlotState::Chosen => next.push(*t),
                SlotState::Waits => {
                    if slot.sent != NOT_SENT {
                        next.push(sent[slot.sent as usize]);
                    }
                    budget.waiting.push(Waiting {
                        id: t.id,
                        priority: slot.priority,
                        waited: slot.waited.saturating_add(1),
                    });
                }
            }
        }
        budget.last_staleness = staleness;
    }

    /// What a tick of waiting adds to a change's priority.
    fn weight(&self, sent: Option<&WireEntity>, t: &WireEntity) -> u32 {
        let nearness = self.observer.map_or(1, |o| {
            let dx = i64::from(t.position[0]) - i64::from(o[0]);
            let dy = i64::from(t.position[1]) - i64::from(o[1]);
            let d2_16 = dx
                .saturating_mul(dx)
                .saturating_add(dy.saturating_mul(dy))
                .saturating_mul(16);
            // Quarters of the leave radius: d <= R/4, R/2, 3R/4.
            let r2 = self.limits.reach2;
            if d2_16 <= r2 {
                8
            } else if d2_16 <= r2.saturating_mul(4) {
                4
            } else if d2_16 <= r2.saturating_mul(9) {
                2
            } else {
                1
            }
        });
        let size = match sent {
            None => ENTERING_SIZE,
            Some(s) => {
                let moved = (i64::from(t.position[0]) - i64::from(s.position[0]))
                    .unsigned_abs()
                    .max((i64::from(t.position[1]) - i64::from(s.position[1])).unsigned_abs());
                let metres = (moved / POSITION_UNITS_PER_M as u64).min(u64::from(MOVE_SIZE_MAX));
                let health = if s.health != t.health || s.archetype != t.archetype {
                    HEALTH_SIZE
                } else {
                    0
                };
                1 + metres as u32 + health
            }
        };
        nearness * size
    }
}

/// Puts the candidates of highest priority whose costs fit `room` first (ties to the lower
/// index, so the choice is deterministic); returns how many fit. A partial selection,
/// linear in the candidates: by the average cost, then shrunk until the prefix fits.
fn choose(candidates: &mut [Candidate], room: i64) -> usize {
    let total: i64 = candidates.iter().map(|c| i64::from(c.cost)).sum();
    if total <= room {
        return candidates.len();
    }
    if room <= 0 {
        return 0;
    }
    let order = |a: &Candidate, b: &Candidate| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.index.cmp(&b.index))
    };
    let average = (total / candidates.len() as i64).max(1);
    let mut ranked = candidates.len();
    let mut k = ((room / average) as usize).min(ranked);
    while k > 0 {
        if k < ranked {
            candidates[..ranked].select_nth_unstable_by(k - 1, order);
            ranked = k;
        }
        let cost: i64 = candidates[..k].iter().map(|c| i64::from(c.cost)).sum();
        if cost <= room {
            return k;
        }
        // Over by a fraction: shrink by it (at least one).
        k = ((k as i64 * room / cost) as usize).min(k - 1);
    }
    0
}

#[cfg(test)]
mod tests;
