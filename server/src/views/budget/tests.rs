use super::*;
use crate::views::{ViewChanges, WireTable};
use proptest::prelude::*;
use tessera_shared::protocol::codec::decode;
use tessera_shared::protocol::delta::{DeltaDecoder, DeltaEncoder, EncodeScratch};
use tessera_shared::protocol::messages::StateS2c;

/// 20 Hz, a 96 m leave radius.
fn limits(bytes_per_tick: i64, staleness_ticks_max: u16) -> BudgetLimits {
    let reach = 96.0 * f64::from(POSITION_UNITS_PER_M);
    BudgetLimits {
        bytes_per_tick,
        staleness_ticks_max,
        reach2: (reach * reach) as i64,
    }
}

/// One client of a crowd: its encoder, budget and decoder, stepped tick by tick with
/// every state decoded as a client would.
struct Client {
    encoder: DeltaEncoder,
    budget: ClientBudget,
    scratch: BudgetScratch,
    encode: EncodeScratch,
    decoder: DeltaDecoder,
    limits: BudgetLimits,
    tick: u64,
    /// The client acks the state of this many ticks before its newest (a round trip).
    ack_lag: u64,
    /// The next view is built from nothing (the client's region changed).
    fresh: bool,
    ghosts: Vec<NetId>,
    /// Bytes of every state.
    sizes: Vec<usize>,
}

impl Client {
    fn new(limits: BudgetLimits) -> Self {
        Client {
            encoder: DeltaEncoder::default(),
            budget: ClientBudget::new(&limits),
            scratch: BudgetScratch::default(),
            encode: EncodeScratch::default(),
            decoder: DeltaDecoder::default(),
            limits,
            tick: 0,
            ack_lag: 0,
            fresh: false,
            ghosts: Vec::new(),
            sizes: Vec::new(),
        }
    }

    /// The next tick: `truth` is the whole view (sorted by id), `entered` and `changed`
    /// the ids that came into it or changed, `left` those gone. Acks the newest state
    /// it decoded; returns the view the client has now.
    fn step(
        &mut self,
        truth: &[WireEntity],
        entered: &[u64],
        changed: &[u64],
        left: &[u64],
        observer: Option<WireEntity>,
        fighting: &[NetId],
    ) -> Vec<WireEntity> {
        self.tick += 1;
        let table = WireTable(truth.to_vec());
        let index = |ids: &[u64]| -> Vec<u32> {
            ids.iter()
                .map(|&id| truth.iter().position(|e| e.id.0 == id).unwrap() as u32)
                .collect()
        };
        let (entered, changed) = (index(entered), index(changed));
        let left: Vec<NetId> = left.iter().map(|&id| NetId(id)).collect();
        let view = NextView {
            changes: ViewChanges {
                left: &left,
                entered: &entered,
                changed: &changed,
                table: &table,
                own: None,
            },
            fresh: std::mem::take(&mut self.fresh),
            ghost_ids: &mut self.ghosts,
            near_ghosts: &[],
            visible_max: usize::MAX,
        };
        self.budget.refill(&self.limits);
        let builder = Budgeted {
            view,
            budget: &mut self.budget,
            scratch: &mut self.scratch,
            limits: self.limits,
            observer,
            fighting,
        };
        let mut bytes = Vec::new();
        let ack = self.decoder.newest_tick().saturating_sub(self.ack_lag);
        self.encoder
            .encode_next_into(self.tick, ack, builder, &mut self.encode, &mut bytes);
        self.budget.spend(bytes.len(), &self.limits);
        self.sizes.push(bytes.len());
        let state: StateS2c = decode(&bytes, bytes.len()).expect("a valid state");
        let decoded = self.decoder.apply(&state).expect("decodes").expect("newer");
        assert_eq!(
            decoded.entities,
            self.encoder.view(),
            "the client decodes what the node thinks it has"
        );
        decoded.entities.clone()
    }
}

fn entity(id: u64, x: i32, y: i32) -> WireEntity {
    WireEntity {
        id: NetId(id),
        archetype: 1,
        position: [x, y],
        health: 1_600,
    }
}

/// `n` entities on a line from the origin, 1 m apart, each moved `t` steps of 0.25 m.
fn crowd(n: u64, t: i32) -> Vec<WireEntity> {
    (1..=n)
        .map(|id| entity(id, id as i32 * 32 + t * 8, t * 8))
        .collect()
}

/// A client (800 bytes a tick) whose first view shows all of `crowd(n, 0)`, and its ids.
fn client_showing(n: u64, staleness_ticks_max: u16) -> (Client, Vec<u64>) {
    let mut client = Client::new(limits(800, staleness_ticks_max));
    let ids: Vec<u64> = (1..=n).collect();
    let view = client.step(&crowd(n, 0), &ids, &[], &[], None, &[]);
    assert_eq!(view.len(), n as usize, "the first view fits the burst");
    (client, ids)
}

#[test]
fn a_client_within_its_budget_gets_every_change_every_tick() {
    let mut client = Client::new(limits(800, 20));
    let ids: Vec<u64> = (1..=100).collect();
    let view = client.step(&crowd(100, 0), &ids, &[], &[], None, &[]);
    assert_eq!(view, crowd(100, 0), "the first view fits the burst");
    for t in 1..50 {
        let view = client.step(&crowd(100, t), &[], &ids, &[], None, &[]);
        assert_eq!(view, crowd(100, t), "tick {t}");
    }
    assert_eq!(client.budget.n_waiting(), 0);
    assert!(
        client.sizes[1..].iter().all(|&b| b <= 800),
        "{:?}",
        client.sizes
    );
}

/// A crowd too large for one datagram's worth of changes: with the bucket full, each
/// delta still fits a datagram (a state larger would go on a stream), and what waits
/// comes in the next ticks.
#[test]
fn deltas_fit_a_datagram_whatever_the_bucket_holds() {
    // 600 entities moving every tick: about 1,800 bytes of changes a tick, within the
    // budget's 2,000 but not the 1,024 any datagram carries. Fewer ticks than the staleness bound,
    // which would send the changes that waited that long whatever they weigh.
    let mut client = Client::new(limits(2_000, 20));
    let ids: Vec<u64> = (1..=600).collect();
    client.step(&crowd(600, 0), &ids, &[], &[], None, &[]);
    for t in 1..15 {
        client.step(&crowd(600, t), &[], &ids, &[], None, &[]);
    }
    let largest = client.sizes[1..].iter().max().copied().unwrap_or(0);
    assert!(
        client.sizes[0] > DATAGRAM_PAYLOAD_BYTES_MIN,
        "the keyframe uses the burst: {} bytes",
        client.sizes[0]
    );
    assert!(
        largest <= DATAGRAM_PAYLOAD_BYTES_MIN,
        "a delta of {largest} bytes"
    );
    assert!(
        client.sizes[1..]
            .iter()
            .all(|&b| b > DATAGRAM_PAYLOAD_BYTES_MIN - 100),
        "the deltas use the datagram: {:?}",
        client.sizes
    );
}

#[test]
fn a_dense_crowd_stays_within_the_budget_and_no_entity_is_staler_than_the_bound() {
    // 2,000 entities all moving 5 m/s, a two-tick round trip: each update, late, weighs
    // about 7 bytes and is repeated until acked, so a few seconds is what 800 bytes a
    // tick can bound staleness to.
    let (budget, staleness) = (800, 100u16);
    let mut client = Client::new(limits(budget, staleness));
    client.ack_lag = 2;
    let n = 2_000u64;
    let ids: Vec<u64> = (1..=n).collect();
    let observer = Some(entity(1 << 63, 0, 0));
    // Ticks each entity's value at the client has differed from the truth in a row.
    let mut behind = vec![0u16; n as usize];
    let mut views_over = 0;
    let ticks = 300;
    for t in 0..ticks {
        let truth = crowd(n, t);
        let (entered, changed) = if t == 0 {
            (&ids, &[][..])
        } else {
            (&vec![], &ids[..])
        };
        let view = client.step(&truth, entered, changed, &[], observer, &[]);
        let mut at = view.iter().peekable();
        for (i, e) in truth.iter().enumerate() {
            let has = at.next_if(|v| v.id == e.id);
            if has == Some(e) {
                behind[i] = 0;
            } else {
                behind[i] += 1;
                assert!(
                    behind[i] <= staleness,
                    "entity {} is {} ticks stale at tick {t}",
                    e.id.0,
                    behind[i]
                );
            }
        }
        views_over += usize::from(view.len() < truth.len());
    }
    assert!(
        views_over > 0,
        "the crowd does not fit at once: it comes into view over ticks"
    );
    // Until the first ack, every state is a keyframe holding all the client shows (over
    // the budget: the debt's floor forgives the excess). From then on the states
    // average the budget, the bucket's burst aside.
    let first_acked = client.ack_lag as usize + 1;
    let total: usize = client.sizes[first_acked..].iter().sum();
    let allowed = budget as usize * (ticks as usize - first_acked + BURST_TICKS as usize);
    assert!(
        total <= allowed,
        "{total} bytes over {ticks} ticks, budget {allowed}"
    );
    assert!(
        client.budget.n_waiting() > 0,
        "the crowd is over the budget"
    );
}

#[test]
fn near_entities_come_into_view_before_far_ones() {
    let mut client = Client::new(limits(100, 20));
    // Ids in reverse order of distance, so that id order is not what decides.
    let truth: Vec<WireEntity> = (1..=200u64)
        .map(|id| entity(id, (201 - id as i32) * 14, 0))
        .collect();
    let ids: Vec<u64> = (1..=200).collect();
    let view = client.step(&truth, &ids, &[], &[], Some(entity(1 << 63, 0, 0)), &[]);
    assert!(
        !view.is_empty() && view.len() < truth.len(),
        "{}",
        view.len()
    );
    let farthest_in = view.iter().map(|e| e.position[0]).max().unwrap();
    let nearest_out = truth
        .iter()
        .filter(|e| !view.iter().any(|v| v.id == e.id))
        .map(|e| e.position[0])
        .min()
        .unwrap();
    assert!(
        farthest_in <= nearest_out + 96 * 32 / 4,
        "an entity at {farthest_in} came in before one at {nearest_out}"
    );
}

#[test]
fn the_avatar_and_whoever_fights_it_are_sent_even_over_the_budget() {
    let (mut client, ids) = client_showing(50, 1_000);
    client.limits = limits(1, 1_000);
    client.budget.tokens = -10_000; // Deep in debt.
    let fighting = [NetId(7)];
    let view = client.step(
        &crowd(50, 1),
        &[],
        &ids,
        &[],
        Some(crowd(50, 1)[2]),
        &fighting,
    );
    let has = |id: u64| view.iter().find(|e| e.id.0 == id).copied();
    assert_eq!(has(3), Some(crowd(50, 1)[2]), "the observer's own entity");
    assert_eq!(has(7), Some(crowd(50, 1)[6]), "the one it fights");
    assert_eq!(has(8), Some(crowd(50, 0)[7]), "the others wait");
}

#[test]
fn entities_leaving_view_are_removed_at_once_even_when_changes_wait() {
    let (mut client, _) = client_showing(100, 50);
    client.limits = limits(40, 50);
    client.budget.tokens = 0;
    let truth: Vec<WireEntity> = crowd(100, 1).into_iter().skip(10).collect();
    let left: Vec<u64> = (1..=10).collect();
    let changed: Vec<u64> = (11..=100).collect();
    let view = client.step(&truth, &[], &changed, &left, None, &[]);
    assert_eq!(view.len(), 90);
    assert!(view.iter().all(|e| e.id.0 > 10));
    assert!(client.budget.n_waiting() > 0);
}

proptest! {
    /// `choose` takes a prefix that fits and holds the highest priorities.
    #[test]
    fn the_chosen_fit_the_room_and_outrank_the_rest(
        costs in prop::collection::vec((0u32..50, 1u32..20), 0..200),
        room in -10i64..2_000,
    ) {
        let mut candidates: Vec<Candidate> = costs
            .iter()
            .enumerate()
            .map(|(i, &(priority, cost))| Candidate { priority, waited: 0, cost, index: i as u32 })
            .collect();
        let k = choose(&mut candidates, room);
        let cost: i64 = candidates[..k].iter().map(|c| i64::from(c.cost)).sum();
        prop_assert!(cost <= room.max(0));
        if let Some(lowest_in) = candidates[..k].iter().map(|c| c.priority).min() {
            prop_assert!(candidates[k..].iter().all(|c| c.priority <= lowest_in));
        }
        let mut indices: Vec<u32> = candidates.iter().map(|c| c.index).collect();
        indices.sort_unstable();
        prop_assert_eq!(indices, (0..costs.len() as u32).collect::<Vec<_>>());
    }
}

#[test]
fn keyframes_over_the_budget_never_take_away_what_the_client_shows() {
    // No ack ever arrives: every state is a keyframe, which replaces the client's view.
    let mut client = Client::new(limits(800, 1_000));
    client.ack_lag = u64::MAX;
    let n = 600u64;
    let ids: Vec<u64> = (1..=n).collect();
    let observer = Some(entity(1 << 63, 0, 0));
    let mut shown = 0;
    for t in 0..40 {
        let (entered, changed) = if t == 0 {
            (&ids, &[][..])
        } else {
            (&vec![], &ids[..])
        };
        let view = client.step(&crowd(n, t), entered, changed, &[], observer, &[]);
        assert!(
            view.len() >= shown,
            "tick {t}: the client showed {shown} entities, now {}",
            view.len()
        );
        shown = view.len();
    }
    assert!(shown > 0);
}

#[test]
fn the_debt_is_floored_so_a_client_recovers_within_a_few_ticks() {
    let limits = limits(800, 20);
    let mut budget = ClientBudget::new(&limits);
    budget.spend(1_000_000, &limits);
    assert_eq!(budget.tokens, -limits.burst());
    for _ in 0..=2 * BURST_TICKS {
        budget.refill(&limits);
    }
    assert!(budget.tokens > 0);
}

#[test]
fn a_region_change_while_changes_wait_replaces_the_view_without_old_entities() {
    let mut client = Client::new(limits(800, 1_000));
    client.ack_lag = 2;
    let ids: Vec<u64> = (1..=600).collect();
    let observer = Some(entity(1 << 63, 0, 0));
    for t in 0..5 {
        let (entered, changed) = if t == 0 {
            (&ids, &[][..])
        } else {
            (&vec![], &ids[..])
        };
        client.step(&crowd(600, t), entered, changed, &[], observer, &[]);
    }
    assert!(
        client.budget.n_waiting() > 0,
        "the crowd is over the budget"
    );
    // The avatar crosses into a region whose entities have other ids.
    let other: Vec<WireEntity> = (1_001..=1_050).map(|id| entity(id, 0, 0)).collect();
    let other_ids: Vec<u64> = (1_001..=1_050).collect();
    client.fresh = true;
    let view = client.step(&other, &other_ids, &[], &[], observer, &[]);
    assert!(
        view.iter().all(|e| e.id.0 > 1_000),
        "the old region's entities are gone at once"
    );
    for _ in 0..10 {
        client.step(&other, &[], &[], &[], observer, &[]);
    }
    assert_eq!(client.step(&other, &[], &[], &[], observer, &[]), other);
    assert_eq!(client.budget.n_waiting(), 0);
}
