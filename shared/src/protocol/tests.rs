//! Protocol properties: every message round-trips, arbitrary bytes never panic any
//! decoder, deltas rebuild exactly what was sent (under loss and reordering), and the
//! wire meets its size goals.

use proptest::prelude::*;
use std::collections::BTreeMap;

use super::codec::*;
use super::delta::*;
use super::limits::*;
use super::messages::*;
use super::quantize::*;
use crate::ids::{NetId, PlayerId, RegionId};
use crate::math::Vec2;

fn entities() -> impl Strategy<Value = Vec<WireEntity>> {
    prop::collection::btree_map(
        prop_oneof![0u64..500, any::<u64>()],
        (0u16..8, -5000i32..5000, -5000i32..5000, 0u32..2000),
        0..120,
    )
    .prop_map(|m: BTreeMap<u64, (u16, i32, i32, u32)>| {
        m.into_iter()
            .map(|(id, (archetype, x, y, health))| WireEntity {
                id: NetId(id),
                archetype,
                position: [x, y],
                health,
            })
            .collect()
    })
}

/// `base` with some entities moved, hurt, removed, and some added.
fn evolve(base: Vec<WireEntity>, seed: u64) -> Vec<WireEntity> {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s >> 33
    };
    let mut out: BTreeMap<u64, WireEntity> = BTreeMap::new();
    for mut e in base {
        match next() % 10 {
            0 => continue, // removed
            1..=6 => {
                e.position[0] += (next() % 40) as i32 - 20;
                e.position[1] += (next() % 40) as i32 - 20;
            }
            7 => e.health = e.health.saturating_sub((next() % 50) as u32),
            _ => {}
        }
        out.insert(e.id.0, e);
    }
    for _ in 0..next() % 5 {
        let id = next() % 1000;
        out.entry(id).or_insert(WireEntity {
            id: NetId(id),
            archetype: (next() % 4) as u16,
            position: [(next() % 3000) as i32, (next() % 3000) as i32],
            health: (next() % 1600) as u32,
        });
    }
    out.into_values().collect()
}

proptest! {
    #[test]
    fn blocks_rebuild_exactly_what_was_encoded(base in entities(), current in entities()) {
        let mut block = Vec::new();
        encode_block(&base, &current, &mut block);
        let mut out = Vec::new();
        decode_block(&base, &block, &mut out).unwrap();
        prop_assert_eq!(out, current);
    }

    #[test]
    fn direct_message_encoding_equals_bincode(first in entities(), second in entities(), tick in prop_oneof![1u64..1_000_000, 1u64..u64::MAX / 2]) {
        let mut a = DeltaEncoder::default();
        let mut b = DeltaEncoder::default();
        let mut scratch = EncodeScratch::default();
        for (i, entities) in [first, second].into_iter().enumerate() {
            let t = tick + i as u64;
            let ack = if i == 0 { 0 } else { tick };
            let state = a.encode(Snapshot { tick: t, entities: entities.clone() }, ack);
            let mut out = Vec::new();
            b.encode_next_into(t, ack, Replace(&entities), &mut scratch, &mut out);
            prop_assert_eq!(&out, &encode(&state, STATE_STREAM_BYTES_MAX).unwrap());
            // Reserved exactly: it becomes `Bytes` without another allocation.
            prop_assert_eq!(out.len(), out.capacity());
        }
    }

    #[test]
    fn hostile_deltas_near_the_integer_limits_are_errors(big in prop_oneof![Just(i64::MAX), Just(i64::MIN), any::<i64>()], field in 0u64..3) {
        let base = [WireEntity { id: NetId(1), archetype: 0, position: [5, 5], health: 5 }];
        let mut block = Vec::new();
        super::varint::write_u64(&mut block, 0); // nothing removed
        super::varint::write_u64(&mut block, 1); // one update, of index 0
        super::varint::write_u64(&mut block, 1 << field); // mask: x, y or health
        super::varint::write_i64(&mut block, big);
        super::varint::write_u64(&mut block, 0); // nothing added
        let mut out = Vec::new();
        let _ = decode_block(&base, &block, &mut out);
    }

    #[test]
    fn arbitrary_blocks_never_panic(base in entities(), block in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut out = Vec::new();
        if decode_block(&base, &block, &mut out).is_ok() {
            prop_assert!(out.windows(2).all(|w| w[0].id < w[1].id), "decoded ids must be sorted");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_datagram::<InputC2s>(&bytes);
        let _ = decode_datagram::<StateS2c>(&bytes);
        let _ = decode_frame_body::<ControlC2s>(&bytes);
        let _ = decode_frame_body::<ControlS2c>(&bytes);
        if bytes.len() >= FRAME_HEADER_BYTES {
            let _ = frame_body_len([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
    }

    #[test]
    fn inputs_round_trip(seq: u32, ack_tick: u64, frames in prop::collection::vec(
        (any::<i16>(), any::<i16>(), prop::option::of(any::<u64>())), 1..=INPUT_FRAMES_MAX)) {
        let msg = InputC2s {
            seq,
            ack_tick,
            frames: frames.into_iter().map(|(x, y, a)| InputFrame { move_q: [x, y], attack: a.map(NetId) }).collect(),
        };
        let bytes = encode_datagram(&msg).unwrap();
        prop_assert_eq!(decode_datagram::<InputC2s>(&bytes).unwrap(), msg);
    }

    #[test]
    fn control_messages_round_trip(token in "[a-zA-Z0-9._-]{0,200}", text in ".{0,100}", code in 0usize..12, ticket in prop::option::of(prop::collection::vec(any::<u8>(), 0..64))) {
        let codes = [ErrorCode::VersionMismatch, ErrorCode::BadToken, ErrorCode::TokenExpired,
            ErrorCode::WrongAudience, ErrorCode::ServerFull, ErrorCode::RateLimited, ErrorCode::Malformed,
            ErrorCode::RegionUnavailable, ErrorCode::BadTicket, ErrorCode::Banned, ErrorCode::Internal, ErrorCode::UnsupportedTransport];
        let c2s = ControlC2s::Hello(HelloC2s { protocol_version: super::PROTOCOL_VERSION, token, ticket: ticket.clone() });
        let frame = encode_frame(&c2s).unwrap();
        let len = frame_body_len([frame[0], frame[1], frame[2], frame[3]]).unwrap();
        prop_assert_eq!(len, frame.len() - FRAME_HEADER_BYTES);
        prop_assert_eq!(decode_frame_body::<ControlC2s>(&frame[FRAME_HEADER_BYTES..]).unwrap(), c2s);
        for s2c in [
            ControlS2c::Error(ErrorS2c { code: codes[code], message: text.clone(), retry_after_ms: Some(500) }),
            ControlS2c::Welcome(WelcomeS2c { session: 9, player: PlayerId(3), entity: NetId(77), region: RegionId(2), tick: 1234, tick_hz: 20, resume_ticket: ticket.clone().unwrap_or_default(), archetypes: vec!["adventurer".into(), text.clone()] }),
            ControlS2c::ResumeTicket(ticket.clone().unwrap_or_default()),
            ControlS2c::Redirect(RedirectS2c { addr: "127.0.0.1:4434".into(), ticket: ticket.clone().unwrap_or_default() }),
            ControlS2c::Kicked(KickedS2c { reason: KickReason::LoggedInElsewhere, message: text.clone() }),
            ControlS2c::Event(EventS2c::Damage { attacker: NetId(1), target: NetId(2), amount: 3.5 }),
            ControlS2c::Bye,
        ] {
            let frame = encode_frame(&s2c).unwrap();
            prop_assert_eq!(decode_frame_body::<ControlS2c>(&frame[FRAME_HEADER_BYTES..]).unwrap(), s2c);
        }
    }

    /// A link that drops, duplicates and reorders states, and acks late: whatever the
    /// client applies equals what the server sent for that tick.
    #[test]
    fn deltas_survive_loss_and_reordering(start in entities(), seed: u64, losses in prop::collection::vec(0u8..10, 60)) {
        let mut encoder = DeltaEncoder::default();
        let mut decoder = DeltaDecoder::default();
        let mut sent: BTreeMap<u64, Vec<WireEntity>> = BTreeMap::new();
        let mut entities = start;
        let mut in_flight: Vec<StateS2c> = Vec::new();
        let mut ack = 0;
        for (i, loss) in losses.into_iter().enumerate() {
            let tick = i as u64 + 1;
            entities = evolve(entities, seed ^ tick);
            sent.insert(tick, entities.clone());
            in_flight.push(encoder.encode(Snapshot { tick, entities: entities.clone() }, ack));
            // Deliver: 30% lost, otherwise the newest or (10%) an older one reordered.
            let delivered = match loss {
                0..=2 => None,
                3 if in_flight.len() > 1 => Some(in_flight.remove(0)),
                _ => in_flight.pop(),
            };
            if let Some(state) = delivered {
                match decoder.apply(&state) {
                    Ok(Some(snapshot)) => prop_assert_eq!(&snapshot.entities, &sent[&snapshot.tick]),
                    Ok(None) => {}
                    // A baseline the client never got (lost): it keeps acking its newest,
                    // and the server falls back to a keyframe if that is too old.
                    Err(DecodeError::UnknownBaseline(_)) => {}
                    Err(e) => prop_assert!(false, "decode failed: {e}"),
                }
            }
            ack = decoder.newest_tick();
            prop_assert!(encoder.n_held() <= SNAPSHOTS_HELD_MAX);
        }
    }
}

/// A client whose acks come back `lag` ticks late (0 to 25: up to 1.25 s at 20 Hz) costs
/// the encoder at most SNAPSHOTS_HELD_MAX snapshots and every state decodes on a lossless
/// link. Up to a lag of 20 ticks, only the states before the first ack are keyframes and
/// the baseline is at most about 1.5 times the lag old (those in flight are thinned, so
/// acks keep finding one); beyond it, the baseline may outlive the 32 states a client
/// keeps.
#[test]
fn a_slow_client_costs_a_bounded_number_of_snapshots_and_keeps_fresh_baselines() {
    let start: Vec<WireEntity> = (0..50u64)
        .map(|i| WireEntity {
            id: NetId(i * 3),
            archetype: 1,
            position: [i as i32 * 10, 0],
            health: 100,
        })
        .collect();
    for lag in 0..=25u64 {
        let mut encoder = DeltaEncoder::default();
        let mut decoder = DeltaDecoder::default();
        let mut entities = start.clone();
        let mut sent = BTreeMap::new();
        let mut on_the_way: Vec<StateS2c> = Vec::new();
        let (mut worst_age, mut keyframes) = (0, 0);
        for tick in 1..=200u64 {
            entities = evolve(entities, tick);
            sent.insert(tick, entities.clone());
            let state = encoder.encode(
                Snapshot {
                    tick,
                    entities: entities.clone(),
                },
                decoder.newest_tick(),
            );
            assert!(encoder.n_held() <= SNAPSHOTS_HELD_MAX, "lag {lag}");
            // The first ack is back at tick lag + 2.
            if tick > lag + 1 {
                match state.baseline_tick {
                    0 => keyframes += 1,
                    baseline => worst_age = worst_age.max(tick - baseline),
                }
            }
            on_the_way.push(state);
            if on_the_way.len() as u64 > lag {
                let state = on_the_way.remove(0);
                let snapshot = decoder.apply(&state).expect("decodes").expect("newer");
                assert_eq!(snapshot.entities, sent[&snapshot.tick], "lag {lag}");
            }
        }
        println!("lag {lag}: baseline at most {worst_age} ticks old, {keyframes} keyframes");
        if lag <= 20 {
            assert_eq!(keyframes, 0, "lag {lag}");
            assert!(
                worst_age <= lag + 1 + lag.div_ceil(2),
                "lag {lag}: a baseline {worst_age} ticks old"
            );
        }
    }
}

/// PERFORMANCE.md goal 4: <= 8 B per moving entity per update, >= 5x smaller than naive
/// f32 encoding, unchanged entities ~0 B, <= 128 kbit/s per client at 20 Hz with 100
/// visible moving entities. Deterministic: sizes, not times.
#[test]
fn wire_size_goals() {
    const VISIBLE: usize = 100;
    const TICKS: u64 = 200;
    const HZ: u64 = 20;
    const ACK_LAG_TICKS: u64 = 3; // 150 ms round trip at 20 Hz.
    let speed_mps = 6.0f32;
    let dt = 1.0 / HZ as f32;
    // 100 entities walking in different directions at 6 m/s, ids spread like NPCs of a
    // populated region.
    let mut positions: Vec<Vec2> = (0..VISIBLE)
        .map(|i| Vec2::new(500.0 + i as f32, 500.0 - i as f32))
        .collect();
    let dirs: Vec<Vec2> = (0..VISIBLE)
        .map(|i| {
            let a = i as f32 * 0.37;
            Vec2::new(1.0 - a.fract(), a.fract())
                * (1.0 / ((1.0 - a.fract()).powi(2) + a.fract().powi(2)).sqrt())
        })
        .collect();
    let ids: Vec<NetId> = (0..VISIBLE as u64)
        .map(|i| NetId((1 << 40) | (i * 37)))
        .collect();
    let mut encoder = DeltaEncoder::default();
    let mut decoder = DeltaDecoder::default();
    let mut pending: Vec<StateS2c> = Vec::new();
    let (mut delta_bytes, mut datagram_bytes, mut updates) = (0usize, 0usize, 0usize);
    for tick in 1..=TICKS {
        for (p, d) in positions.iter_mut().zip(&dirs) {
            *p += *d * (speed_mps * dt);
        }
        let entities: Vec<WireEntity> = ids
            .iter()
            .zip(&positions)
            .map(|(&id, &p)| WireEntity {
                id,
                archetype: 1,
                position: quantize_position(p).unwrap(),
                health: 1600,
            })
            .collect();
        let state = encoder.encode(Snapshot { tick, entities }, decoder.newest_tick());
        let bytes = encode_datagram(&state).expect("fits a datagram");
        if tick > 1 {
            // Steady state only: the first tick is a keyframe.
            delta_bytes += state.block.len();
            datagram_bytes += bytes.len();
            updates += VISIBLE;
        }
        pending.push(decode_datagram(&bytes).unwrap());
        // The client receives each state ACK_LAG_TICKS later.
        if pending.len() as u64 > ACK_LAG_TICKS {
            let state = pending.remove(0);
            decoder.apply(&state).unwrap();
        }
    }
    let per_entity = delta_bytes as f64 / updates as f64;
    // Naive: id u64 + x, y, health as f32 = 20 bytes per entity per update.
    let naive = 20.0;
    let kbit_s = datagram_bytes as f64 * 8.0 / ((TICKS - 1) as f64 / HZ as f64) / 1000.0;
    println!(
        "wire: {per_entity:.2} B per moving entity per update ({:.1}x smaller than naive {naive} B), \
         {kbit_s:.1} kbit/s per client at {HZ} Hz with {VISIBLE} moving entities (ack lag {ACK_LAG_TICKS} ticks)",
        naive / per_entity
    );
    assert!(per_entity <= 8.0, "{per_entity} B per entity");
    assert!(
        naive / per_entity >= 5.0,
        "only {:.1}x smaller",
        naive / per_entity
    );
    assert!(kbit_s <= 128.0, "{kbit_s} kbit/s");

    // Unchanged entities cost nothing: the same snapshot again is a 3-byte block.
    let mut enc = DeltaEncoder::default();
    let still: Vec<WireEntity> = ids
        .iter()
        .map(|&id| WireEntity {
            id,
            archetype: 1,
            position: [10, 10],
            health: 5,
        })
        .collect();
    enc.encode(
        Snapshot {
            tick: 1,
            entities: still.clone(),
        },
        0,
    );
    let again = enc.encode(
        Snapshot {
            tick: 2,
            entities: still,
        },
        1,
    );
    assert_eq!(again.block.len(), 3, "three zero counts");
}

/// The wire values PROTOCOL.md documents for the enums.
#[test]
fn enum_wire_values_match_the_spec() {
    let code = |c: ErrorCode| encode_datagram(&c).unwrap();
    assert_eq!(code(ErrorCode::VersionMismatch), [0]);
    assert_eq!(code(ErrorCode::BadToken), [1]);
    assert_eq!(code(ErrorCode::Internal), [10]);
    assert_eq!(encode_datagram(&KickReason::TooSlow).unwrap(), [4]);
    // ControlC2s::Logout is variant 1; Hello is 0.
    assert_eq!(encode_frame(&ControlC2s::Logout).unwrap(), [1, 0, 0, 0, 1]);
    // An input: seq 5, ack 300 (251 marker + u16), one frame: (-1, 2) zigzag, no attack.
    let input = InputC2s {
        seq: 5,
        ack_tick: 300,
        frames: vec![InputFrame {
            move_q: [-1, 2],
            attack: None,
        }],
    };
    assert_eq!(
        encode_datagram(&input).unwrap(),
        [5, 251, 44, 1, 1, 1, 4, 0]
    );
}

/// PROTOCOL.md's title and section 8 name the version the code speaks.
#[test]
fn spec_names_the_protocol_version() {
    let spec = include_str!("../../../PROTOCOL.md");
    let v = super::PROTOCOL_VERSION;
    assert!(
        spec.starts_with(&format!("# Tessera client protocol, version {v}\n")),
        "PROTOCOL.md's title must name version {v}"
    );
    assert!(
        spec.contains(&format!("`PROTOCOL_VERSION` is {v} ")),
        "PROTOCOL.md section 8 must say `PROTOCOL_VERSION` is {v}"
    );
}

/// PROTOCOL.md section 5: deltas are zigzag 64-bit, so a jump across the whole `i32`
/// range round-trips, and a sum outside the field's type is refused.
#[test]
fn block_deltas_are_64_bit() {
    let e = |x: i32, health: u32| WireEntity {
        id: NetId(7),
        archetype: 1,
        position: [x, 0],
        health,
    };
    let baseline = [e(i32::MIN, 0)];
    let current = [e(i32::MAX, u32::MAX)];
    let mut block = Vec::new();
    encode_block(&baseline, &current, &mut block);
    // head (gap 0, mask x|health), dx = 2^32 - 1 zigzagged (2^33 - 2: marker 253 + 8
    // bytes), dhealth likewise.
    let dx = super::varint::zigzag(i64::from(i32::MAX) - i64::from(i32::MIN));
    let mut expected = vec![0, 1, 0b0101];
    super::varint::write_u64(&mut expected, dx);
    super::varint::write_u64(&mut expected, super::varint::zigzag(i64::from(u32::MAX)));
    expected.push(0);
    assert_eq!(block, expected);
    assert_eq!(expected[3], 253, "a 33-bit value takes the 8-byte form");
    let mut out = Vec::new();
    decode_block(&baseline, &block, &mut out).unwrap();
    assert_eq!(out, current);
    // The same delta applied to x = 1 would overflow i32: refused.
    assert_eq!(
        decode_block(&[e(1, 0)], &block, &mut out),
        Err(DecodeError::OutOfRange)
    );
}

/// PROTOCOL.md section 3: the avatar's id is the player id with the top bit set.
#[test]
fn avatar_ids_are_the_player_id_with_the_top_bit() {
    let player = PlayerId(123_456);
    assert_eq!(NetId::of_player(player).0, (1u64 << 63) + 123_456);
}
