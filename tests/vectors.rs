//! The conformance vectors in `tests/vectors/` (PROTOCOL.md section 9): byte-exact
//! messages with their decoded meaning, and a short recorded session of states with the
//! snapshot a client must hold after each. The Rust implementation decodes and re-encodes
//! every vector here; `TESSERA_BLESS=1` rewrites the files from the cases below (review
//! the diff: a changed byte is a protocol change).

use serde_json::{Value, json};

use tessera::shared::ids::{NetId, PlayerId, RegionId};
use tessera::shared::protocol::codec::{decode, encode, encode_frame};
use tessera::shared::protocol::delta::{DeltaDecoder, DeltaEncoder, Snapshot, WireEntity};
use tessera::shared::protocol::limits::{CONTROL_FRAME_BYTES_MAX, STATE_STREAM_BYTES_MAX};
use tessera::shared::protocol::messages::*;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Compares `path` with `expected`, or rewrites it under `TESSERA_BLESS=1`.
fn check_file(name: &str, expected: &Value) {
    let path = dir().join(name);
    let text = serde_json::to_string_pretty(expected).unwrap() + "\n";
    if std::env::var_os("TESSERA_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == text,
        "{} differs from what the code encodes; if the protocol changed on purpose, bump \
         PROTOCOL_VERSION and regenerate with `TESSERA_BLESS=1 cargo test --test main vectors`",
        path.display()
    );
}

fn message_cases() -> Vec<(&'static str, &'static str, Vec<u8>, Value)> {
    let ticket = b"opaque-ticket".to_vec();
    let c2s = |name, m: ControlC2s| {
        (
            name,
            "control_c2s",
            encode_frame(&m).unwrap(),
            serde_json::to_value(&m).unwrap(),
        )
    };
    let s2c = |name, m: ControlS2c| {
        (
            name,
            "control_s2c",
            encode_frame(&m).unwrap(),
            serde_json::to_value(&m).unwrap(),
        )
    };
    let input = |name, m: InputC2s| {
        (
            name,
            "input_c2s",
            encode(&m, 1_200).unwrap(),
            serde_json::to_value(&m).unwrap(),
        )
    };
    let avatar = NetId::of_player(PlayerId(42));
    vec![
        c2s(
            "hello_with_token",
            ControlC2s::Hello(HelloC2s {
                protocol_version: tessera::shared::protocol::PROTOCOL_VERSION,
                token: "header.claims.signature".into(),
                ticket: None,
            }),
        ),
        c2s(
            "hello_with_ticket",
            ControlC2s::Hello(HelloC2s {
                protocol_version: tessera::shared::protocol::PROTOCOL_VERSION,
                token: String::new(),
                ticket: Some(ticket.clone()),
            }),
        ),
        c2s("logout", ControlC2s::Logout),
        c2s(
            "buy",
            ControlC2s::Buy(BuyC2s {
                key: "buy-0001".into(),
                shop: "general_store".into(),
                item: "health_potion".into(),
                count: 2,
            }),
        ),
        c2s(
            "refund",
            ControlC2s::Refund(RefundC2s {
                key: "refund-0001".into(),
                purchase: "buy-0001".into(),
            }),
        ),
        c2s("get_economy", ControlC2s::GetEconomy),
        c2s(
            "trade_offer",
            ControlC2s::TradeOffer(TradeOfferC2s {
                key: "offer-7".into(),
                with: PlayerId(43),
                give: Goods {
                    coins: 0,
                    items: vec![ItemCount {
                        item: "wolf_pelt".into(),
                        count: 3,
                    }],
                },
                take: Goods {
                    coins: 30,
                    items: vec![],
                },
                ttl_ms: 60_000,
            }),
        ),
        c2s(
            "trade_accept",
            ControlC2s::TradeAccept(TradeAcceptC2s {
                key: "accept-1".into(),
                from: PlayerId(42),
                offer: "offer-7".into(),
            }),
        ),
        c2s(
            "trade_cancel",
            ControlC2s::TradeCancel(TradeCancelC2s {
                key: "cancel-1".into(),
                offer: "offer-7".into(),
            }),
        ),
        s2c(
            "trade_offered",
            ControlS2c::TradeOffered(TradeOfferedS2c {
                from: PlayerId(42),
                offer: "offer-7".into(),
                give: Goods {
                    coins: 0,
                    items: vec![ItemCount {
                        item: "wolf_pelt".into(),
                        count: 3,
                    }],
                },
                take: Goods {
                    coins: 30,
                    items: vec![],
                },
                open_until_ms: 1_796_623_148_643,
            }),
        ),
        c2s(
            "chat_whisper",
            ControlC2s::Chat(ChatC2s {
                id: 7,
                channel: ChatChannel::Whisper(PlayerId(42)),
                text: "meet at the well".into(),
            }),
        ),
        c2s(
            "command_buy",
            ControlC2s::Command(CommandC2s {
                id: 8,
                line: "/buy general_store bread 2".into(),
            }),
        ),
        c2s(
            "get_leaderboard",
            ControlC2s::GetLeaderboard(GetLeaderboardC2s {
                board: LeaderboardKind::Kills,
                count: 10,
            }),
        ),
        s2c(
            "leaderboard",
            ControlS2c::Leaderboard(LeaderboardS2c {
                board: LeaderboardKind::Coins,
                top: vec![
                    StandingS2c {
                        rank: 1,
                        player: PlayerId(42),
                        score: 1_500,
                    },
                    StandingS2c {
                        rank: 2,
                        player: PlayerId(7),
                        score: 90,
                    },
                ],
                you: Some(StandingS2c {
                    rank: 2,
                    player: PlayerId(7),
                    score: 90,
                }),
            }),
        ),
        s2c(
            "chat_say",
            ControlS2c::Chat(ChatS2c {
                channel: ChatChannel::Say,
                from: PlayerId(42),
                from_name: "ada".into(),
                text: "hello".into(),
            }),
        ),
        s2c(
            "reply_rate_limited",
            ControlS2c::Reply(ReplyS2c {
                id: 9,
                refused: Some(RefusedS2c {
                    code: RefusalCode::RateLimited,
                    message: "at most 1 chat messages a second".into(),
                    retry_after_ms: Some(950),
                }),
                text: String::new(),
            }),
        ),
        s2c(
            "tx_result_applied",
            ControlS2c::TxResult(TxResultS2c {
                key: "buy-0001".into(),
                outcome: TxOutcomeS2c::Applied,
            }),
        ),
        s2c(
            "tx_result_refused",
            ControlS2c::TxResult(TxResultS2c {
                key: "buy-0002".into(),
                outcome: TxOutcomeS2c::Refused(RefusedS2c {
                    code: RefusalCode::InsufficientCoins,
                    message: "24 coins needed, 2 held".into(),
                    retry_after_ms: None,
                }),
            }),
        ),
        s2c(
            "economy",
            ControlS2c::Economy(EconomyS2c {
                coins: 26,
                items: vec![
                    ItemCount {
                        item: "bread".into(),
                        count: 5,
                    },
                    ItemCount {
                        item: "health_potion".into(),
                        count: 5,
                    },
                ],
                xp: 1_300,
                level: 4,
            }),
        ),
        s2c(
            "welcome",
            ControlS2c::Welcome(WelcomeS2c {
                session: 7,
                player: PlayerId(42),
                entity: avatar,
                region: RegionId(1),
                tick: 300,
                tick_hz: 20,
                resume_ticket: ticket.clone(),
                archetypes: vec!["adventurer".into(), "boar".into(), "wolf".into()],
            }),
        ),
        s2c(
            "error_rate_limited",
            ControlS2c::Error(ErrorS2c {
                code: ErrorCode::RateLimited,
                message: "too many logins from 127.0.0.1".into(),
                retry_after_ms: Some(1_000),
            }),
        ),
        s2c(
            "error_unsupported_transport",
            ControlS2c::Error(ErrorS2c {
                code: ErrorCode::UnsupportedTransport,
                message: "QUIC datagrams (RFC 9221) are required".into(),
                retry_after_ms: None,
            }),
        ),
        s2c(
            "event_damage",
            ControlS2c::Event(EventS2c::Damage {
                attacker: avatar,
                target: NetId(1_000),
                amount: 6.5,
            }),
        ),
        s2c(
            "event_death",
            ControlS2c::Event(EventS2c::Death {
                entity: NetId(1_000),
            }),
        ),
        s2c("event_respawn", ControlS2c::Event(EventS2c::Respawn)),
        s2c(
            "event_message",
            ControlS2c::Event(EventS2c::Message {
                text: "Server restarts in 5 minutes".into(),
            }),
        ),
        s2c(
            "redirect",
            ControlS2c::Redirect(RedirectS2c {
                addr: "node-b.example:4433".into(),
                ticket: ticket.clone(),
            }),
        ),
        s2c(
            "kicked_protocol_violation",
            ControlS2c::Kicked(KickedS2c {
                reason: KickReason::ProtocolViolation,
                message: "second Hello".into(),
            }),
        ),
        s2c("bye", ControlS2c::Bye),
        s2c("resume_ticket", ControlS2c::ResumeTicket(ticket)),
        input(
            "input_one_frame",
            InputC2s {
                seq: 5,
                ack_tick: 300,
                frames: vec![InputFrame {
                    move_q: [-1, 2],
                    attack: None,
                }],
            },
        ),
        input(
            "input_redundant_frames_with_attack",
            InputC2s {
                seq: 70_000,
                ack_tick: 0,
                frames: vec![
                    InputFrame {
                        move_q: [256, -256],
                        attack: Some(NetId(1_000)),
                    },
                    InputFrame {
                        move_q: [i16::MIN, i16::MAX],
                        attack: None,
                    },
                ],
            },
        ),
    ]
}

/// Decodes a message of `channel` and gives its meaning as JSON, as a client would.
fn decode_meaning(channel: &str, bytes: &[u8]) -> Value {
    let body = || {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4, "frame header");
        &bytes[4..]
    };
    match channel {
        "control_c2s" => {
            serde_json::to_value(decode::<ControlC2s>(body(), CONTROL_FRAME_BYTES_MAX).unwrap())
        }
        "control_s2c" => {
            serde_json::to_value(decode::<ControlS2c>(body(), CONTROL_FRAME_BYTES_MAX).unwrap())
        }
        "input_c2s" => serde_json::to_value(decode::<InputC2s>(bytes, 1_200).unwrap()),
        other => panic!("unknown channel {other}"),
    }
    .unwrap()
}

#[test]
fn message_vectors_decode_to_their_meaning_and_encode_to_their_bytes() {
    let cases: Vec<Value> = message_cases()
        .into_iter()
        .map(|(name, channel, bytes, meaning)| {
            json!({ "name": name, "channel": channel, "hex": hex(&bytes), "decoded": meaning })
        })
        .collect();
    let file = json!({
        "protocol_version": tessera::shared::protocol::PROTOCOL_VERSION,
        "messages": cases,
    });
    check_file("messages.json", &file);
    // As another client would: from the file's bytes to its meaning.
    let text = std::fs::read_to_string(dir().join("messages.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    for case in file["messages"].as_array().unwrap() {
        let bytes = unhex(case["hex"].as_str().unwrap());
        let meaning = decode_meaning(case["channel"].as_str().unwrap(), &bytes);
        assert_eq!(meaning, case["decoded"], "{}", case["name"]);
    }
}

fn entity(id: u64, archetype: u16, x: i32, y: i32, health: u32) -> WireEntity {
    WireEntity {
        id: NetId(id),
        archetype,
        position: [x, y],
        health,
    }
}

fn snapshot_json(s: &Snapshot) -> Value {
    json!({
        "tick": s.tick,
        "entities": s.entities.iter().map(|e| json!({
            "id": e.id.0, "archetype": e.archetype, "x": e.position[0], "y": e.position[1],
            "health": e.health,
        })).collect::<Vec<_>>(),
    })
}

/// A short session as the node's encoder sends it to one client: which states arrive (in
/// arrival order, with a duplicate, a late one and one against a lost baseline) and what
/// the client holds after each.
fn session_states() -> Vec<(StateS2c, &'static str)> {
    let me = NetId::of_player(PlayerId(42)).0;
    let mut encoder = DeltaEncoder::default();
    let mut snap =
        |tick, entities: Vec<WireEntity>, ack| encoder.encode(Snapshot { tick, entities }, ack);
    let s1 = snap(
        101,
        vec![
            entity(5, 2, 320, -64, 640),
            entity(9, 1, -3_200, 6_400, 480),
            entity(me, 0, 0, 0, 1_600),
        ],
        0,
    );
    // Acked 101: a delta. The wolf (5) moves, the boar (9) is hurt, the avatar moves.
    let s2 = snap(
        102,
        vec![
            entity(5, 2, 330, -60, 640),
            entity(9, 1, -3_200, 6_400, 400),
            entity(me, 0, 8, 0, 1_600),
        ],
        101,
    );
    // Still acked 101 (102's ack not back yet): the boar dies (removed), a new wolf (7).
    let s3 = snap(
        103,
        vec![
            entity(5, 2, 340, -56, 640),
            entity(7, 2, 1_000, 1_000, 640),
            entity(me, 0, 16, 0, 1_600),
        ],
        101,
    );
    // Acked 103: only the avatar moves, by a large step.
    let s4 = snap(
        104,
        vec![
            entity(5, 2, 340, -56, 640),
            entity(7, 2, 1_000, 1_000, 640),
            entity(me, 0, -100_000, 0, 1_600),
        ],
        103,
    );
    // A state against a baseline (tick 99) the client never had: skipped.
    let mut unknown = s4.clone();
    unknown.tick = 105;
    unknown.baseline_tick = 99;
    vec![
        (s1, "applied"),
        (s2.clone(), "applied"),
        (s2, "ignored: not newer than the newest applied"),
        (s3.clone(), "applied"),
        (unknown, "skipped: unknown baseline"),
        (s4, "applied"),
        (s3, "ignored: not newer than the newest applied"),
    ]
}

#[test]
fn the_recorded_session_decodes_to_its_states() {
    let mut decoder = DeltaDecoder::default();
    let mut steps = Vec::new();
    for (state, outcome) in session_states() {
        let datagram = encode(&state, 1_200).unwrap();
        let result = decoder.apply(&state).map(|s| s.cloned());
        let held = match (&result, outcome) {
            (Ok(Some(s)), "applied") => snapshot_json(s),
            (Ok(None), o) if o.starts_with("ignored") => Value::Null,
            (Err(_), o) if o.starts_with("skipped") => Value::Null,
            other => panic!("unexpected {other:?}"),
        };
        steps.push(json!({
            "hex": hex(&datagram),
            "decoded": { "tick": state.tick, "baseline_tick": state.baseline_tick, "block": hex(&state.block) },
            "outcome": outcome,
            "snapshot": held,
        }));
    }
    let file = json!({
        "protocol_version": tessera::shared::protocol::PROTOCOL_VERSION,
        "avatar": NetId::of_player(PlayerId(42)).0,
        "archetypes": ["adventurer", "boar", "wolf"],
        "states": steps,
    });
    check_file("session.json", &file);
    // As another client would: the file's datagrams through a fresh decoder.
    let text = std::fs::read_to_string(dir().join("session.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let mut decoder = DeltaDecoder::default();
    for (i, step) in file["states"].as_array().unwrap().iter().enumerate() {
        let bytes = unhex(step["hex"].as_str().unwrap());
        let state: StateS2c = decode(&bytes, STATE_STREAM_BYTES_MAX).unwrap();
        match decoder.apply(&state) {
            Ok(Some(s)) => assert_eq!(snapshot_json(s), step["snapshot"], "state {i}"),
            Ok(None) => assert!(step["outcome"].as_str().unwrap().starts_with("ignored")),
            Err(e) => assert!(
                step["outcome"].as_str().unwrap().starts_with("skipped"),
                "state {i}: {e}"
            ),
        }
    }
}
