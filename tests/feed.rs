//! The live feed over a real WebSocket: the key is checked before the upgrade (header or
//! subprotocol), filters by topic, events arrive as they happen, and a subscriber that
//! takes nothing is dropped while another, reading, gets every event in order.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_server::feed::Topic;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::admin::{admin_addr, http, http_async, node_with_keys};
use crate::net::{client_runtime, login};

type Socket = WebSocketStream<TcpStream>;

/// Opens the feed at `path` with `headers`, on a socket whose receive buffer is
/// `recv_buffer` bytes if given (a reader that cannot keep up).
async fn open(
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, String)],
    recv_buffer: Option<u32>,
) -> Result<Socket, Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    let stream = socket.connect(addr).await.unwrap();
    tokio_tungstenite::client_async(request, stream)
        .await
        .map(|(socket, _)| socket)
}

fn bearer(key: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {key}"))]
}

/// The next event on `socket` that `wanted` accepts (within 5 s).
async fn next_event(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Value {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let event: Value = serde_json::from_str(&text).unwrap();
                    if wanted(&event) {
                        return event;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the feed ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the event within 5 s")
}

fn now_ms() -> u64 {
    tessera_server::economy::now_unix_ms()
}

#[test]
fn the_feed_shows_sessions_and_admin_actions_as_they_happen() {
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    client_runtime().block_on(async {
        // Without a key, with a wrong one, or with a bad filter: refused before the upgrade.
        for (path, headers, status) in [
            ("/v1/feed", vec![], 401),
            ("/v1/feed", bearer("not-a-key"), 401),
            ("/v1/feed?topics=gossip", bearer(&viewer), 400),
            ("/v1/feed?colour=red", bearer(&viewer), 400),
        ] {
            match open(addr, path, &headers, None).await {
                Err(Error::Http(response)) => {
                    assert_eq!(response.status().as_u16(), status, "{path}");
                }
                other => panic!("{path}: {:?}", other.map(|_| ())),
            }
        }
        // A browser's way: the key as a subprotocol beside the feed's.
        let protocols = vec![(
            "sec-websocket-protocol",
            format!("tessera-feed.v1, bearer.{viewer}"),
        )];
        let mut browser = open(addr, "/v1/feed?topics=metrics", &protocols, None)
            .await
            .expect("the subprotocol key is taken");
        let metrics = next_event(&mut browser, |e| e["region"].is_null()).await;
        assert_eq!(metrics["topic"], "metrics");
        assert!(metrics["data"]["regions"].is_array(), "{metrics}");

        let mut feed = open(
            addr,
            "/v1/feed?topics=session,admin",
            &bearer(&viewer),
            None,
        )
        .await
        .unwrap();
        let client = login(&node, "ada").await.unwrap();
        let player = client.welcome().player.0;
        let event = next_event(&mut feed, |e| e["topic"] == "session").await;
        assert_eq!(event["data"]["event"], "login", "{event}");
        assert_eq!(event["data"]["player"], player);
        assert_eq!(event["data"]["name"], "ada");
        assert_eq!(event["region"], client.welcome().region.0);
        let late = now_ms().saturating_sub(event["at_ms"].as_u64().unwrap());
        assert!(late < 5_000, "{late} ms");

        let path = format!("/v1/players/{player}/kick");
        let (status, body) = http_async(
            addr,
            "POST",
            &path,
            Some(&admin),
            Some(r#"{"reason": "afk"}"#),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // The kick is carried out before its audit record is complete: the logout may
        // come first.
        let (mut kick, mut left) = (None, None);
        while kick.is_none() || left.is_none() {
            let event = next_event(&mut feed, |_| true).await;
            match event["topic"].as_str() {
                Some("admin") => kick = Some(event),
                _ => left = Some(event),
            }
        }
        let (kick, left) = (kick.unwrap(), left.unwrap());
        assert_eq!(kick["data"]["action"], "player.kick", "{kick}");
        assert_eq!(kick["data"]["reason"], "afk");
        assert_eq!(kick["data"]["result"], "ok");
        assert_eq!(left["data"]["event"], "logout", "{left}");
        assert_eq!(left["data"]["player"], player);
        drop(client);
    });
}

#[test]
fn a_subscriber_that_takes_nothing_is_dropped_and_a_reader_gets_everything() {
    use futures_util::StreamExt;
    let (node, [viewer, ..]) = node_with_keys();
    let addr = admin_addr(&node);
    let feed = node.node.as_ref().unwrap().feed.clone();
    let (events, padding) = (20_000u64, "x".repeat(1_000));
    client_runtime().block_on(async {
        let path = "/v1/feed?topics=alert&region=7";
        // 4 KiB of receive buffer, never read: its node-side queue fills at once.
        let stalled = open(addr, path, &bearer(&viewer), Some(4_096))
            .await
            .unwrap();
        let mut reader = open(addr, path, &bearer(&viewer), None).await.unwrap();
        let reading = tokio::spawn(async move {
            let mut seen = 0u64;
            while seen < events {
                match tokio::time::timeout(Duration::from_secs(10), reader.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        let event: Value = serde_json::from_str(&text).unwrap();
                        assert_eq!(event["data"]["i"], seen, "in order, none missed");
                        seen += 1;
                    }
                    Ok(Some(Ok(_))) => {}
                    other => panic!("after {seen} events: {other:?}"),
                }
            }
            seen
        });
        // 20 MB of events, in bursts the reader keeps up with.
        for i in 0..events {
            feed.publish(
                Topic::Alert,
                Some(7),
                serde_json::json!({ "i": i, "padding": padding }),
            );
            if i % 200 == 199 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(reading.await.unwrap(), events);
        let deadline = Instant::now() + Duration::from_secs(10);
        while feed
            .stats()
            .slow_subscribers
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "the stalled subscriber is dropped"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(stalled);
    });
    let (status, metrics) = http(addr, "GET", "/metrics", Some(&viewer), None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tessera_feed_slow_subscribers_total 1"),
        "{metrics}"
    );
}

/// In a cluster, any node's feed shows every node's events: a login on B is seen by a
/// subscriber of A, named as B's.
#[test]
fn a_nodes_feed_shows_the_other_nodes_events() {
    let test = "a_nodes_feed_shows_the_other_nodes_events";
    let Some(pair) = crate::cluster::Pair::start(test) else {
        return;
    };
    let key = tessera_server::admin::keys::dev_admin_key(&pair.a.dir).unwrap();
    let (a_addr, b_name) = (pair.a().admin_addr, {
        let (_, info) = http(
            pair.b().admin_addr,
            "GET",
            "/v1/node",
            Some(&tessera_server::admin::keys::dev_admin_key(&pair.b.dir).unwrap()),
            None,
        );
        crate::admin::json(&info)["name"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    pair.runtime.block_on(async {
        let mut feed = open(a_addr, "/v1/feed?topics=session", &bearer(&key), None)
            .await
            .unwrap();
        // B's subscription to the cluster's feed may not be in place yet (pub/sub is
        // loss-tolerant): log in on B until A's feed shows it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let client = tessera::shared::client::Client::connect(&pair.login(pair.b(), "feed-bo"))
                .await
                .unwrap();
            let player = client.welcome().player.0;
            let seen = tokio::time::timeout(
                Duration::from_secs(1),
                next_event(&mut feed, |e| e["data"]["event"] == "login"),
            )
            .await;
            if let Ok(event) = seen {
                assert_eq!(event["node"], b_name.as_str(), "{event}");
                assert_eq!(event["data"]["player"], player);
                assert_eq!(event["data"]["name"], "feed-bo");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "A's feed shows B's logins within 10 s"
            );
            client.logout().await.unwrap();
        }
    });
}
