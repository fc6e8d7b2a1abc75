//! Emergency actions over the admin API with real clients: a frozen region ignores its
//! players' moves and tells them why, unfreezing lets them move again, an evacuation puts
//! a region's players into another and tells them, kick-all ends every session, and the
//! history lists each with its reason, newest first.

use std::time::{Duration, Instant};

use serde_json::Value;
use tessera::shared::client::Client;
use tessera::shared::math::Vec2;
use tessera::shared::protocol::messages::{ControlS2c, EventS2c, KickReason};
use tessera::shared::protocol::quantize::dequantize_position;

use crate::admin::{admin_addr, http, json, node_with_keys};
use crate::net::{client_runtime, login};

/// The next operators' message the client is sent (within 5 s).
async fn message(client: &mut Client) -> String {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let _ = client.send_input(Vec2::ZERO, None);
            if let ControlS2c::Event(EventS2c::Message { text }) =
                client.next_control().await.unwrap()
            {
                return text;
            }
        }
    })
    .await
    .expect("a message within 5 s")
}

/// Where the client's avatar is after `move_m` per input for `for_`, as its states say.
async fn walk(client: &mut Client, move_m: Vec2, for_: Duration) -> Vec2 {
    let me = client.welcome().entity;
    let until = Instant::now() + for_;
    let mut at = None;
    while Instant::now() < until || at.is_none() {
        let _ = client.send_input(move_m, None);
        let state = tokio::time::timeout(Duration::from_secs(5), client.next_state())
            .await
            .expect("a state within 5 s")
            .unwrap();
        if let Some(e) = state.entities.iter().find(|e| e.id == me) {
            at = Some(dequantize_position(e.position));
        }
    }
    at.unwrap()
}

#[test]
fn operators_freeze_evacuate_and_kick_everyone_with_a_history() {
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    let call = move |method: &'static str, path: String, key: &str, body: Option<&str>| {
        let (key, body) = (key.to_owned(), body.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            let (status, text) = http(addr, method, &path, Some(&key), body.as_deref());
            (status, json(&text))
        })
    };
    client_runtime().block_on(async {
        let mut ada = login(&node, "ada").await.unwrap();
        let mut bob = login(&node, "bob").await.unwrap();
        let ada_id = ada.welcome().player.0;
        let region = ada.welcome().region.0;

        // Frozen: her moves are ignored, and she is told why.
        let (status, body) = call(
            "POST",
            format!("/v1/regions/{region}/freeze"),
            &admin,
            Some(r#"{"reason": "exploit under investigation"}"#),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["was_frozen"], false);
        let told = message(&mut ada).await;
        assert!(told.contains("frozen") && told.contains("exploit under investigation"));
        let before = walk(&mut ada, Vec2::ZERO, Duration::from_millis(200)).await;
        let after = walk(&mut ada, Vec2::new(0.25, 0.0), Duration::from_secs(1)).await;
        assert!(
            before.distance_squared(after) < 1e-4,
            "{before:?} -> {after:?}"
        );
        let (_, regions) = call("GET", "/v1/regions".into(), &viewer, None)
            .await
            .unwrap();
        let frozen: Vec<u64> = regions["regions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["frozen"] == true)
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        assert_eq!(frozen, [u64::from(region)], "{regions}");

        // Unfrozen: she moves again; a second unfreeze is a conflict.
        let (status, body) = call(
            "DELETE",
            format!("/v1/regions/{region}/freeze"),
            &admin,
            Some(r#"{"reason": "fixed"}"#),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(message(&mut ada).await.contains("unfrozen"));
        let moved = walk(&mut ada, Vec2::new(0.25, 0.0), Duration::from_secs(1)).await;
        assert!(moved.x > after.x + 1.0, "{after:?} -> {moved:?}");
        let (status, _) = call(
            "DELETE",
            format!("/v1/regions/{region}/freeze"),
            &admin,
            Some(r#"{"reason": "again"}"#),
        )
        .await
        .unwrap();
        assert_eq!(status, 409);

        // Evacuated into another region held here: she is told and lands there.
        let other = if region == 1 { 2 } else { 1 };
        let (status, body) = call(
            "POST",
            format!("/v1/regions/{region}/evacuate"),
            &admin,
            Some(&format!(r#"{{"to": {other}, "reason": "region restart"}}"#)),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(
            body["players"]
                .as_array()
                .unwrap()
                .contains(&Value::from(ada_id)),
            "{body}"
        );
        assert!(message(&mut ada).await.contains("region restart"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, details) = call(
                "GET",
                format!("/v1/players?online=true&region={other}"),
                &viewer,
                None,
            )
            .await
            .unwrap();
            let there = details["players"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["player"] == ada_id);
            // The directory hears of it at once; her avatar walks there on the next tick.
            if there {
                break;
            }
            assert!(Instant::now() < deadline, "{details}");
            let _ = ada.send_input(Vec2::ZERO, None);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (to, code) in [(9_999, 422), (region, 422)] {
            let (status, body) = call(
                "POST",
                format!("/v1/regions/{region}/evacuate"),
                &admin,
                Some(&format!(r#"{{"to": {to}, "reason": "bad"}}"#)),
            )
            .await
            .unwrap();
            assert_eq!(status, code, "to {to}: {body}");
        }

        // Everyone kicked.
        let (status, body) = call(
            "POST",
            "/v1/node/kick-all".into(),
            &admin,
            Some(r#"{"reason": "emergency maintenance"}"#),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["kicked"], 2);
        for client in [&mut ada, &mut bob] {
            let kicked = crate::admin::kicked_within_5s(client).await;
            assert_eq!(kicked.reason, KickReason::Admin);
            assert_eq!(kicked.message, "emergency maintenance");
        }

        // The history, newest first, each with its reason and result.
        let (status, history) = call("GET", "/v1/emergency/history".into(), &viewer, None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{history}");
        let seen: Vec<(String, String, bool)> = history["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["action"].as_str().unwrap().to_owned(),
                    r["reason"].as_str().unwrap().to_owned(),
                    r["result"] == "ok",
                )
            })
            .collect();
        let expected = [
            ("node.kick_all", "emergency maintenance", true),
            ("region.evacuate", "bad", false),
            ("region.evacuate", "bad", false),
            ("region.evacuate", "region restart", true),
            ("region.unfreeze", "again", false),
            ("region.unfreeze", "fixed", true),
            ("region.freeze", "exploit under investigation", true),
        ];
        let expected: Vec<(String, String, bool)> = expected
            .iter()
            .map(|(a, r, ok)| ((*a).to_owned(), (*r).to_owned(), *ok))
            .collect();
        assert_eq!(seen, expected, "{history}");
    });
}
