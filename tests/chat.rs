//! Chat and slash commands (issue 17 item 4): each channel reaches whom it should, a flood
//! is refused past the player's limit while others go on, bad text and bad commands get
//! clear refusals, mutes and blocked words hold; across two nodes, global messages and
//! whispers travel over Redis.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tessera::shared::client::Client;
use tessera::shared::ids::PlayerId;
use tessera::shared::math::Vec2;
use tessera::shared::protocol::messages::{
    ChatChannel, ChatS2c, ControlS2c, Goods, ItemCount, RefusalCode, ReplyS2c, TxOutcomeS2c,
};
use tessera::shared::protocol::quantize::dequantize_position;
use tessera_server::admin::keys::{Role, new_key};

use crate::admin::{admin_addr, http, http_async};
use crate::net::{client_runtime, login, start_with};

/// A client with the chat messages it received while waiting for replies.
struct Player {
    client: Client,
    inbox: VecDeque<ChatS2c>,
}

impl Player {
    fn new(client: Client) -> Player {
        Player {
            client,
            inbox: VecDeque::new(),
        }
    }

    fn id(&self) -> PlayerId {
        self.client.welcome().player
    }

    /// The next `Reply` or `Chat` (other control messages skipped), within 10 s.
    async fn next(&mut self) -> ControlS2c {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self
                    .client
                    .next_control()
                    .await
                    .expect("the session goes on")
                {
                    m @ (ControlS2c::Reply(_) | ControlS2c::Chat(_)) => return m,
                    _ => continue,
                }
            }
        })
        .await
        .expect("a reply or a chat message within 10 s")
    }

    /// The `Reply` to request `id` (chat messages received meanwhile go to the inbox).
    async fn reply_to(&mut self, id: u32) -> ReplyS2c {
        loop {
            match self.next().await {
                ControlS2c::Reply(r) if r.id == id => return r,
                ControlS2c::Reply(r) => panic!("expected the reply to {id}, got {r:?}"),
                ControlS2c::Chat(c) => self.inbox.push_back(c),
                _ => unreachable!(),
            }
        }
    }

    /// The next chat message received.
    async fn next_chat(&mut self) -> ChatS2c {
        if let Some(c) = self.inbox.pop_front() {
            return c;
        }
        loop {
            if let ControlS2c::Chat(c) = self.next().await {
                return c;
            }
        }
    }

    /// Sends chat `id` and expects it done.
    async fn chat_ok(&mut self, id: u32, channel: ChatChannel, text: &str) {
        self.client.chat(id, channel, text).unwrap();
        let reply = self.reply_to(id).await;
        assert_eq!(reply.refused, None, "{text:?} on {channel:?}");
    }

    /// Sends chat `id` and expects it done, waiting out the rate limit as a client should.
    async fn chat_paced(&mut self, id: u32, channel: ChatChannel, text: &str) {
        loop {
            self.client.chat(id, channel, text).unwrap();
            match self.reply_to(id).await.refused {
                None => return,
                Some(r) if r.code == RefusalCode::RateLimited => {
                    let ms = r.retry_after_ms.expect("a time to retry");
                    tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
                }
                Some(r) => panic!("{text:?} on {channel:?}: {r:?}"),
            }
        }
    }

    /// The refusal code of chat `id`.
    async fn chat_refused(&mut self, id: u32, channel: ChatChannel, text: &str) -> RefusalCode {
        self.client.chat(id, channel, text).unwrap();
        let reply = self.reply_to(id).await;
        reply
            .refused
            .unwrap_or_else(|| panic!("{text:?} must be refused"))
            .code
    }

    /// The reply to command `line` (as request `id`).
    async fn command(&mut self, id: u32, line: &str) -> ReplyS2c {
        self.client.command(id, line).unwrap();
        self.reply_to(id).await
    }
}

/// Teleports `client`'s avatar to `to` over the admin API and waits until its states
/// show it there.
async fn teleport(player: &mut Player, addr: std::net::SocketAddr, key: &str, to: Vec2) {
    let client = &mut player.client;
    let player = client.welcome().player.0;
    let me = client.welcome().entity;
    let (path, key) = (format!("/v1/players/{player}/teleport"), key.to_owned());
    let body = format!(r#"{{"x": {}, "y": {}, "reason": "chat test"}}"#, to.x, to.y);
    let (status, body) =
        tokio::task::spawn_blocking(move || http(addr, "POST", &path, Some(&key), Some(&body)))
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = client.send_input(Vec2::ZERO, None);
        let state = client.next_state().await.unwrap();
        let here = state
            .entities
            .iter()
            .find(|e| e.id == me)
            .map(|e| dequantize_position(e.position));
        if here.is_some_and(|p| p.distance_squared(to) < 0.01) {
            return;
        }
        assert!(Instant::now() < deadline, "teleported within 5 s: {here:?}");
    }
}

#[test]
fn chat_reaches_its_channel_and_bad_requests_get_clear_refusals() {
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-chat"));
    std::fs::create_dir_all(&dir).unwrap();
    let (admin, entry) = new_key("test-admin", Role::Admin).unwrap();
    std::fs::write(dir.join("keys.toml"), entry).unwrap();
    std::fs::write(dir.join("blocked.txt"), "# test list\ndarn\nbad phrase\n").unwrap();
    let (keys, blocked) = (dir.join("keys.toml"), dir.join("blocked.txt"));
    let node = start_with(move |config| {
        config.node.admin.keys_file = Some(keys);
        config.node.chat.blocked_words_file = Some(blocked);
        config.node.chat.chat.burst = 8;
        config.node.chat.commands.burst = 20;
        config.node.chat.chat.per_s = 1;
        config.node.chat.say_radius_m = 30;
    });
    let addr = admin_addr(&node);
    client_runtime().block_on(async {
        let mut ada = Player::new(login(&node, "ada").await.unwrap());
        let mut bo = Player::new(login(&node, "bo").await.unwrap());
        let mut cy = Player::new(login(&node, "cy").await.unwrap());
        let (ada_id, bo_id) = (ada.id(), bo.id());
        // Ada and Bo stand 5 m apart; Cy 300 m away, in the same region.
        teleport(&mut ada, addr, &admin, Vec2::new(300.0, 400.0)).await;
        teleport(&mut bo, addr, &admin, Vec2::new(305.0, 400.0)).await;
        teleport(&mut cy, addr, &admin, Vec2::new(600.0, 400.0)).await;

        // Say: Ada and Bo hear it, not Cy. Region: all three.
        ada.chat_ok(1, ChatChannel::Say, "hello there").await;
        let heard = bo.next_chat().await;
        assert_eq!(
            (
                heard.channel,
                heard.from,
                heard.from_name.as_str(),
                heard.text.as_str()
            ),
            (ChatChannel::Say, ada_id, "ada", "hello there")
        );
        assert_eq!(ada.next_chat().await.text, "hello there", "the speaker too");
        ada.chat_ok(2, ChatChannel::Region, "region news").await;
        let first = cy.next_chat().await;
        assert_eq!(
            (first.channel, first.text.as_str()),
            (ChatChannel::Region, "region news"),
            "Cy, 300 m away, did not hear the say first"
        );
        assert_eq!(bo.next_chat().await.text, "region news");
        assert_eq!(ada.next_chat().await.text, "region news");

        // Global (over the in-process bus): everyone, the sender too.
        bo.chat_ok(3, ChatChannel::Global, "hi all").await;
        for player in [&mut ada, &mut bo, &mut cy] {
            let c = player.next_chat().await;
            assert_eq!(
                (c.channel, c.from, c.text.as_str()),
                (ChatChannel::Global, bo_id, "hi all")
            );
        }

        // Whisper: only Bo; to nobody: PlayerNotFound.
        ada.chat_ok(4, ChatChannel::Whisper(bo_id), "psst").await;
        let c = bo.next_chat().await;
        assert_eq!(
            (c.channel, c.text.as_str()),
            (ChatChannel::Whisper(bo_id), "psst")
        );
        let nobody = ChatChannel::Whisper(PlayerId(999_999));
        assert_eq!(
            ada.chat_refused(5, nobody, "anyone?").await,
            RefusalCode::PlayerNotFound
        );

        // Bad text and blocked words: refused, nothing sent.
        let long = "x".repeat(257);
        for (id, text, code) in [
            (10, "darn it", RefusalCode::Moderated),
            (11, "a Bad  Phrase indeed", RefusalCode::Moderated),
            (12, "", RefusalCode::BadRequest),
            (13, "line\nbreak", RefusalCode::BadRequest),
            (14, "flip\u{202E}txt", RefusalCode::BadRequest),
            (15, long.as_str(), RefusalCode::BadRequest),
        ] {
            let refused = cy.chat_refused(id, ChatChannel::Region, text).await;
            assert_eq!(refused, code, "{text:?}");
        }

        // Commands: output, clear errors, and the economy's shorthand.
        assert!(ada.command(20, "/help").await.text.contains("/who"));
        let who = ada.command(21, "/who").await;
        assert!(
            who.text.contains("3 players") && who.text.contains("ada"),
            "{}",
            who.text
        );
        for (id, line, code, says) in [
            (22, "/dance", RefusalCode::UnknownCommand, "/help"),
            (
                23,
                "/buy general_store",
                RefusalCode::BadRequest,
                "usage: /buy",
            ),
            (
                24,
                "/buy general_store bread lots",
                RefusalCode::BadRequest,
                "usage: /buy",
            ),
            (25, "/w bob hi", RefusalCode::BadRequest, "usage: /w"),
            (
                26,
                "/trade 5 coins",
                RefusalCode::BadRequest,
                "usage: /trade",
            ),
            (27, "no slash", RefusalCode::BadRequest, "starts with /"),
            (
                28,
                "/w 999999 hi",
                RefusalCode::PlayerNotFound,
                "not in the world",
            ),
        ] {
            let refused = ada.command(id, line).await.refused.expect(line);
            assert_eq!(refused.code, code, "{line}");
            assert!(
                refused.message.contains(says),
                "{line}: {}",
                refused.message
            );
        }
        let reply = ada.command(29, &format!("/w {} see you", bo_id.0)).await;
        assert_eq!(reply.refused, None);
        assert_eq!(bo.next_chat().await.text, "see you");
        let reply = ada.command(30, "/buy general_store bread 1").await;
        let key = reply.text.rsplit("key ").next().unwrap().to_owned();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let ControlS2c::TxResult(r) = ada.client.next_control().await.unwrap() {
                    return r;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!((outcome.key, outcome.outcome), (key, TxOutcomeS2c::Applied));

        // A flood: Dee is refused past its burst of 8, with a time to retry; Bo is not.
        let mut dee = Player::new(login(&node, "dee").await.unwrap());
        for id in 100..112 {
            dee.client.chat(id, ChatChannel::Say, "spam").unwrap();
        }
        let (mut done, mut limited) = (0, 0);
        while done + limited < 12 {
            let ControlS2c::Reply(r) = dee.next().await else {
                continue;
            };
            match r.refused {
                None => done += 1,
                Some(refused) => {
                    assert_eq!(refused.code, RefusalCode::RateLimited);
                    assert!(refused.retry_after_ms.is_some_and(|ms| ms >= 1));
                    limited += 1;
                }
            }
        }
        assert!((8..=9).contains(&done), "{done} sent, {limited} limited");
        bo.chat_ok(40, ChatChannel::Say, "I am not limited").await;

        // A muted player cannot chat; its commands still work.
        let mut eve = Player::new(login(&node, "eve").await.unwrap());
        let eve_id = eve.id().0;
        let (status, body) = http_async(
            addr,
            "POST",
            &format!("/v1/players/{eve_id}/mute"),
            Some(&admin),
            Some(r#"{"reason": "spam", "duration_s": 600}"#),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let refused = eve
            .chat_refused(50, ChatChannel::Global, "let me talk")
            .await;
        assert_eq!(refused, RefusalCode::Muted);
        assert_eq!(eve.command(51, "/who").await.refused, None);
    });
    let (status, metrics) = http(addr, "GET", "/metrics", Some(&admin), None);
    assert_eq!(status, 200);
    for line in [
        r#"tessera_chat_messages_total{channel="global"} 1"#,
        r#"tessera_chat_messages_total{channel="whisper"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_global_message_and_a_whisper_reach_players_on_the_other_node() {
    let test = "a_global_message_and_a_whisper_reach_players_on_the_other_node";
    let Some(pair) = crate::cluster::Pair::start(test) else {
        return;
    };
    pair.runtime.block_on(async {
        let mut ada = Player::new(
            Client::connect(&pair.login(pair.a(), "chat-ada"))
                .await
                .unwrap(),
        );
        let mut bo = Player::new(
            Client::connect(&pair.login(pair.b(), "chat-bo"))
                .await
                .unwrap(),
        );
        let (ada_id, bo_id) = (ada.id(), bo.id());
        // A message published before B's subscription is in place would be missed (pub/sub
        // is loss-tolerant): say hello until B hears one.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut id = 0;
        loop {
            id += 1;
            ada.chat_paced(id, ChatChannel::Global, "hello from A")
                .await;
            let heard = tokio::time::timeout(Duration::from_millis(500), bo.next_chat()).await;
            if let Ok(c) = heard {
                assert_eq!(
                    (c.channel, c.from, c.from_name.as_str()),
                    (ChatChannel::Global, ada_id, "chat-ada")
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "B hears A's global chat within 10 s"
            );
        }
        // In order: ten messages from A arrive at B in the order sent.
        for n in 0..10 {
            ada.chat_paced(100 + n, ChatChannel::Global, &format!("n{n}"))
                .await;
        }
        let mut seen = Vec::new();
        while seen.len() < 10 {
            let c = bo.next_chat().await;
            if c.text.starts_with('n') {
                seen.push(c.text);
            }
        }
        assert_eq!(seen, (0..10).map(|n| format!("n{n}")).collect::<Vec<_>>());
        // A whisper from B to A crosses too; one to a player nowhere is refused.
        bo.chat_paced(200, ChatChannel::Whisper(ada_id), "psst, A")
            .await;
        loop {
            let c = ada.next_chat().await;
            if c.channel == ChatChannel::Whisper(ada_id) {
                assert_eq!((c.from, c.text.as_str()), (bo_id, "psst, A"));
                break;
            }
        }
        let nobody = ChatChannel::Whisper(PlayerId(424_242));
        let refused = bo.chat_refused(201, nobody, "hello?").await;
        assert_eq!(refused, RefusalCode::PlayerNotFound);

        // A trade offered on A to a player on B: B is told, and accepts it from there.
        let bread = Goods {
            coins: 0,
            items: vec![ItemCount {
                item: "bread".into(),
                count: 1,
            }],
        };
        let coin = Goods {
            coins: 1,
            items: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        let offered = loop {
            // The starter kit (the bread) is committed after the login: offer until held.
            n += 1;
            let key = format!("x-{n}");
            ada.client
                .trade_offer(&key, bo_id, bread.clone(), coin.clone(), 60_000)
                .unwrap();
            let outcome = tx_result(&mut ada.client, &key).await;
            if outcome == TxOutcomeS2c::Applied {
                break key;
            }
            assert!(
                Instant::now() < deadline,
                "ada's offer applied within 10 s: {outcome:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let told = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let ControlS2c::TradeOffered(o) = bo.client.next_control().await.unwrap() {
                    return o;
                }
            }
        })
        .await
        .expect("B's player is told of the offer made on A");
        assert_eq!((told.from, told.offer.as_str()), (ada_id, offered.as_str()));
        bo.client.trade_accept("acc-1", ada_id, &offered).unwrap();
        assert_eq!(
            tx_result(&mut bo.client, "acc-1").await,
            TxOutcomeS2c::Applied
        );
    });
}

/// The outcome of economy request `key` (other control messages skipped), within 10 s.
async fn tx_result(client: &mut Client, key: &str) -> TxOutcomeS2c {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let ControlS2c::TxResult(r) = client.next_control().await.unwrap()
                && r.key == key
            {
                return r.outcome;
            }
        }
    })
    .await
    .expect("an answer within 10 s")
}
