//! Hot reload of balance.toml: a new damage formula applies from the very next tick, in
//! the region and through a running node (over the admin API and the file watch); an
//! invalid file is refused with the old balance kept and `/readyz` saying why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera::regions::io::{GameEvent, PlayerInput, TickInput};
use tessera::shared::client::ClientError;
use tessera::shared::config::{Config, DAMAGE_VARS, Formula};
use tessera::shared::ids::{NetId, PlayerId};
use tessera::shared::math::Vec2;
use tessera::shared::protocol::messages::{ControlS2c, EventS2c};

use crate::admin::http;
use crate::net::{TestNode, client_runtime, login};
use crate::util::{join_at, quiet_config, region};

fn with_damage(config: &Config, formula: &str) -> Arc<Config> {
    let mut config = config.clone();
    config.balance.formulas.damage = Formula::compile(formula, DAMAGE_VARS).unwrap();
    Arc::new(config)
}

#[test]
fn a_reloaded_damage_formula_applies_from_the_next_tick() {
    let (config, _) = quiet_config();
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(with_damage(&config, "3").as_ref().clone());
    let (a, b) = (PlayerId(1), PlayerId(2));
    join_at(&mut region, a, centre);
    join_at(&mut region, b, centre + Vec2::new(1.0, 0.0));
    // `a` attacks `b` every tick; hits land whenever the cooldown allows.
    let mut hits = Vec::new(); // (tick, amount)
    let mut seq = 0;
    fn step(
        region: &mut tessera::regions::Region,
        (a, b): (PlayerId, PlayerId),
        seq: &mut u32,
        hits: &mut Vec<(u64, f32)>,
    ) {
        *seq += 1;
        let mut input = TickInput::default();
        input.inputs.push(PlayerInput {
            player: a,
            seq: *seq,
            move_m: Vec2::ZERO,
            attack: Some(NetId::of_player(b)),
        });
        let out = region.step(input);
        for event in &out.events {
            if let GameEvent::Damage { amount, .. } = *event {
                hits.push((out.tick, amount));
            }
        }
    }
    let mut step = |region: &mut tessera::regions::Region, hits: &mut Vec<(u64, f32)>| {
        step(region, (a, b), &mut seq, hits)
    };
    while hits.len() < 2 {
        step(&mut region, &mut hits);
    }
    let period = hits[1].0 - hits[0].0;
    assert!(hits.iter().all(|&(_, amount)| amount == 3.0), "{hits:?}");
    // Up to the tick before the next hit, then the reload, then that tick.
    while region.tick() + 1 < hits[1].0 + period {
        step(&mut region, &mut hits);
    }
    assert_eq!(hits.len(), 2, "no hit before the reload point");
    region.set_config(with_damage(&config, "11"));
    step(&mut region, &mut hits);
    assert_eq!(
        hits.last(),
        Some(&(hits[1].0 + period, 11.0)),
        "the tick right after the reload hits with the new formula: {hits:?}"
    );
}

/// A node loaded from a config directory of its own (the shipped files with
/// `edit` applied to balance.toml), watching it.
fn node_in_dir(edit: impl Fn(&str) -> String) -> (TestNode, std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-reload"));
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let shipped = include_str!("../config/balance.toml");
    for (name, text) in [
        (
            "tessera.toml",
            include_str!("../config/tessera.toml").to_owned(),
        ),
        (
            "world.toml",
            include_str!("../config/world.toml").to_owned(),
        ),
        ("balance.toml", edit(shipped)),
    ] {
        std::fs::write(config_dir.join(name), text).unwrap();
    }
    let loaded = tessera::shared::config::load_dir(&config_dir).unwrap();
    let (key, entry) =
        tessera_server::admin::keys::new_key("designer", tessera_server::admin::keys::Role::Admin)
            .unwrap();
    std::fs::write(dir.join("keys.toml"), entry).unwrap();
    let node = {
        let mut config = loaded;
        config.node.data_dir = dir.join("data");
        config.node.quic_listen = "127.0.0.1:0".parse().unwrap();
        config.node.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.node.sim_threads = 1;
        config.node.admin.keys_file = Some(dir.join("keys.toml"));
        tessera_server::serve::RunningNode::start_configured(
            Arc::new(config),
            &tessera_server::serve::ServeOptions {
                ticks: None,
                seed: 1,
                config_dir: Some(config_dir.clone()),
            },
        )
        .expect("node starts")
    };
    let secret = tessera_server::auth::dev_secret(&dir.join("data")).unwrap();
    (
        TestNode {
            node: Some(node),
            secret,
            dir,
        },
        config_dir,
        key,
    )
}

/// The damage amounts `client` is told about, in order, over `for_`, attacking `victim`
/// all along.
async fn hits(
    client: &mut tessera::shared::client::Client,
    victim: NetId,
    for_: Duration,
) -> Vec<f32> {
    let until = Instant::now() + for_;
    let mut amounts = Vec::new();
    while Instant::now() < until {
        let _ = client.send_input(Vec2::ZERO, Some(victim));
        match tokio::time::timeout(Duration::from_millis(50), client.next_control()).await {
            Ok(Ok(ControlS2c::Event(EventS2c::Damage { amount, .. }))) => amounts.push(amount),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(ClientError::Kicked(k))) => panic!("kicked: {k:?}"),
            Ok(Err(e)) => panic!("{e}"),
        }
        // Keep the state queue drained.
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::ZERO, client.next_state()).await {}
    }
    amounts
}

fn damage_formula(shipped: &str, formula: &str) -> String {
    assert!(shipped.contains("damage = \"max("), "the shipped formula");
    shipped.replacen(
        "damage = \"max(1, atk * (1 + level * 0.1) - def)\"",
        &format!("damage = \"{formula}\""),
        1,
    )
}

#[test]
fn a_running_node_reloads_balance_over_the_api_and_on_file_change_and_keeps_it_on_a_bad_file() {
    // Quick attacks, so that hits come every few ticks, on a player who does not die of
    // them.
    let shipped = include_str!("../config/balance.toml")
        .replacen("attack_cooldown_ms = 800", "attack_cooldown_ms = 100", 1)
        .replacen("max_health = 100\n", "max_health = 100_000\n", 1);
    assert!(shipped.contains("max_health = 100_000\n"));
    let (node, config_dir, key) = node_in_dir(|_| damage_formula(&shipped, "3"));
    let admin = node.node.as_ref().unwrap().admin_addr;
    let balance = config_dir.join("balance.toml");
    client_runtime().block_on(async {
        let mut attacker = login(&node, "ada").await.unwrap();
        let target = login(&node, "bob").await.unwrap();
        let victim = target.welcome().entity;
        let before = hits(&mut attacker, victim, Duration::from_millis(1500)).await;
        assert!(
            before.len() >= 2 && before.iter().all(|&a| a == 3.0),
            "{before:?}"
        );

        // Over the API: the reply says from which tick.
        std::fs::write(&balance, damage_formula(&shipped, "11")).unwrap();
        let reply = tokio::task::spawn_blocking({
            let key = key.clone();
            move || {
                http(
                    admin,
                    "POST",
                    "/v1/config/reload",
                    Some(&key),
                    Some(r#"{"reason": "buff"}"#),
                )
            }
        })
        .await
        .unwrap();
        assert_eq!(reply.0, 200, "{}", reply.1);
        assert!(reply.1.contains("from_tick"), "{}", reply.1);
        let after = hits(&mut attacker, victim, Duration::from_millis(1500)).await;
        // Hits already in flight may still show the old amount; then only the new one.
        let first_new = after
            .iter()
            .position(|&a| a == 11.0)
            .unwrap_or_else(|| panic!("hits with the new formula: {after:?}; reply {}", reply.1));
        assert!(after[..first_new].iter().all(|&a| a == 3.0), "{after:?}");
        assert!(after[first_new..].iter().all(|&a| a == 11.0), "{after:?}");

        // An invalid file (the file watch reloads it): refused, the old balance runs on.
        std::fs::write(&balance, damage_formula(&shipped, "pow(atk, 2)")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready = loop {
            let (_, body) =
                tokio::task::spawn_blocking(move || http(admin, "GET", "/readyz", None, None))
                    .await
                    .unwrap();
            let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
            if ready["last_reload"]["applied"] == false {
                break ready;
            }
            assert!(
                Instant::now() < deadline,
                "the watch should reload the bad file: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let error = ready["last_reload"]["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains("balance.toml:") && error.contains("pow"),
            "{error}"
        );
        assert_eq!(ready["status"], "ok", "a refused reload does not stop play");
        let still = hits(&mut attacker, victim, Duration::from_millis(1000)).await;
        assert!(
            !still.is_empty() && still.iter().all(|&a| a == 11.0),
            "{still:?}"
        );

        // A good file again, by the watch alone.
        std::fs::write(&balance, damage_formula(&shipped, "5")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let later = hits(&mut attacker, victim, Duration::from_millis(500)).await;
            if later.last() == Some(&5.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the watch should apply the fixed file: {later:?}"
            );
        }
    });
    // Every reload is in the audit log, the watch's as `file-watch`.
    let (_, body) = http(admin, "GET", "/v1/audit", Some(&key), None);
    let audit: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reloads: Vec<(String, String)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "config.reload")
        .map(|r| {
            (
                r["who"].as_str().unwrap().to_owned(),
                r["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        reloads
            .iter()
            .any(|(who, result)| who == "designer" && result == "ok"),
        "{reloads:?}"
    );
    assert!(
        reloads
            .iter()
            .any(|(who, result)| who == "file-watch" && result.starts_with("refused")),
        "{reloads:?}"
    );
    assert!(
        reloads
            .iter()
            .any(|(who, result)| who == "file-watch" && result == "ok"),
        "{reloads:?}"
    );
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&key), None);
    assert!(
        metrics.contains("tessera_balance_reloads_total{result=\"refused\"}"),
        "{metrics}"
    );
}

/// `wolf.max_health` 40 -> 55 through the API: the reply, `/readyz` and the audit log
/// list the change; `GET /v1/config/balance` shows the running value and where it came
/// from.
#[test]
fn a_reload_reports_what_changed_and_the_running_balance_shows_it() {
    let shipped = include_str!("../config/balance.toml");
    let wolf = "max_health = 40\n";
    assert_eq!(shipped.matches(wolf).count(), 1, "the wolf's max_health");
    let (node, config_dir, key) = node_in_dir(str::to_owned);
    let admin = node.node.as_ref().unwrap().admin_addr;
    let get = |path: &str| -> serde_json::Value {
        let (status, body) = http(admin, "GET", path, Some(&key), None);
        assert!(status == 200, "{path}: {status} {body}");
        serde_json::from_str(&body).unwrap()
    };
    let before = get("/v1/config/balance");
    assert_eq!(before["archetypes"]["wolf"]["max_health"], 40.0, "{before}");
    assert_eq!(before["archetypes"]["wolf"]["speed_mps"], 4.5, "{before}");
    assert_eq!(
        before["formulas"]["damage"],
        "max(1, atk * (1 + level * 0.1) - def)"
    );
    assert_eq!(before["movement"]["speed_tolerance"], 0.1, "{before}");
    assert_eq!(before["loaded"]["by"], "start", "{before}");
    let file = before["loaded"]["file"].as_str().unwrap().to_owned();
    assert!(
        std::path::Path::new(&file) == config_dir.join("balance.toml"),
        "{file}"
    );

    std::fs::write(
        config_dir.join("balance.toml"),
        shipped.replacen(wolf, "max_health = 55\n", 1),
    )
    .unwrap();
    let (status, body) = http(
        admin,
        "POST",
        "/v1/config/reload",
        Some(&key),
        Some(r#"{"reason": "tougher wolves"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let line = "archetypes.wolf.max_health 40 -> 55";
    assert_eq!(reply["changes"], serde_json::json!([line]), "{body}");
    // The test's node runs with its own addresses and data dir: tessera.toml differs.
    assert_eq!(
        reply["notes"],
        serde_json::json!(["tessera.toml changed: restart the node to apply it"]),
        "{body}"
    );
    let from_tick = reply["from_tick"].as_u64().unwrap();

    let after = get("/v1/config/balance");
    assert_eq!(after["archetypes"]["wolf"]["max_health"], 55.0, "{after}");
    assert_eq!(after["loaded"]["by"], "reload", "{after}");
    assert_eq!(after["loaded"]["from_tick"], from_tick, "{after}");
    assert_eq!(after["last_reload"]["changes"][0], line, "{after}");
    let (_, ready) = http(admin, "GET", "/readyz", None, None);
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["last_reload"]["applied"], true, "{ready}");
    assert_eq!(
        ready["last_reload"]["changes"],
        serde_json::json!([line]),
        "{ready}"
    );
    let audit = get("/v1/audit?action=config.reload");
    let details = audit["records"][0]["details"].as_str().unwrap().to_owned();
    assert!(
        details.starts_with(&format!("changes: {line}; notes: tessera.toml changed")),
        "{audit}"
    );

    // The same file again: applied, nothing changed.
    let (status, body) = http(
        admin,
        "POST",
        "/v1/config/reload",
        Some(&key),
        Some(r#"{"reason": "again"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["changes"], serde_json::json!([]), "{body}");
}
