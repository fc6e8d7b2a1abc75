//! The operator console (`/console`) in a real headless Chromium, driven over the Chrome
//! DevTools Protocol: it logs in with an API key, its map shows the world's regions and a
//! moving bot, a bulk job started from the page shows its progress to the end, a kick
//! from the players table ends the bot's session, and the live feed shows the kick. The page must run without a script error or a refused load (its
//! Content-Security-Policy allows nothing from elsewhere).
//!
//! `./scripts/test.sh` installs Debian's `chromium`; without one the test skips outside
//! CI, saying so, and fails under CI.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tessera::shared::client::{Client, ClientError};
use tessera::shared::math::Vec2;
use tessera::shared::protocol::messages::KickReason;
use tokio_tungstenite::tungstenite::Message;

use crate::admin::{admin_addr, http_async, node_with_keys};
use crate::net::{client_runtime, login};
use crate::util::services::in_ci;

/// How long a condition in the page may take to hold.
const PAGE_WAIT: Duration = Duration::from_secs(20);

/// The Chromium to drive, or `None` (the test skips, saying so) outside CI.
fn chromium(test: &str) -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
            })
        });
    match found {
        Some(path) => Some(path),
        None if in_ci() => panic!(
            "{test}: CI is set but no chromium is installed: run the suite with \
             ./scripts/test.sh, which installs it"
        ),
        None => {
            eprintln!("SKIPPED {test}: no chromium (./scripts/test.sh installs Debian's)");
            None
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A headless Chromium with one page, spoken to over the DevTools Protocol.
struct Browser {
    child: Child,
    profile: PathBuf,
    socket: Socket,
    session: String,
    next_id: u64,
    /// Script errors, refused loads and console errors the page reported.
    problems: Vec<String>,
}

impl Browser {
    async fn launch(binary: &PathBuf) -> Browser {
        let profile = std::env::temp_dir().join(crate::util::unique("tessera-chromium"));
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // It prints where its DevTools endpoint listens on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut sent = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if !sent && let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_owned());
                    sent = true;
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium prints its DevTools address within 60 s");
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        let (socket, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .expect("the DevTools WebSocket");
        let mut browser = Browser {
            child,
            profile,
            socket,
            session: String::new(),
            next_id: 0,
            problems: Vec::new(),
        };
        let target = browser
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = browser
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.page(domain, json!({})).await;
        }
        browser
    }

    /// Sends a command (to the page's session, or to the browser) and returns its result,
    /// noting the page's problems among the events that come meanwhile.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let answer = self.try_call(session, method, params).await;
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// [`Browser::call`], answering the whole message: its `result` or its `error`.
    async fn try_call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let Some(Ok(Message::Text(text))) = self.socket.next().await else {
                    panic!("the DevTools connection closed during {method}");
                };
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["id"] == id {
                    return message;
                }
                self.note(&message);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"))
    }

    async fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params).await
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self
                .problems
                .push(format!("exception: {}", params["exceptionDetails"])),
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                let text = params["entry"]["text"].as_str().unwrap_or_default();
                // The favicon the browser asks for on its own is no problem of the page.
                if !params["entry"]["url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/favicon.ico"))
                {
                    self.problems.push(format!("log: {text}"));
                }
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => self
                .problems
                .push(format!("console.error: {}", params["args"])),
            _ => {}
        }
    }

    /// The value of `expression` in the page (promises awaited).
    async fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|why| panic!("{expression}: {why}"))
    }

    /// [`Browser::eval`], or why it failed (a script error, or no page to run it in while
    /// one loads).
    async fn try_eval(&mut self, expression: &str) -> Result<Value, String> {
        let session = self.session.clone();
        let answer = self
            .try_call(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        let result = &answer["result"];
        if !answer["error"].is_null() || !result["exceptionDetails"].is_null() {
            return Err(format!(
                "{} {}",
                answer["error"], result["exceptionDetails"]
            ));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits for `expression` to be truthy (not null, false, 0 or ""), and returns it.
    async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            // Between pages (a reload) there is nothing to evaluate in: not yet.
            let value = self.try_eval(expression).await.unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {PAGE_WAIT:?} ({expression} is {value}); page problems: {:?}",
                self.problems
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Walks `client` back and forth along x (a step a state), until its session ends;
/// returns why it ended.
async fn walk_until_the_end(mut client: Client) -> ClientError {
    let mut step = 0u64;
    loop {
        let x = if (step / 40).is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        let _ = client.send_input(Vec2 { x, y: 0.0 }, None);
        match tokio::time::timeout(Duration::from_secs(10), client.next_state()).await {
            Ok(Ok(_)) => step += 1,
            Ok(Err(e)) => return e,
            Err(_) => panic!("the bot got no state for 10 s"),
        }
    }
}

#[test]
fn the_console_logs_in_maps_a_moving_bot_kicks_it_from_the_table_and_feeds_the_kick() {
    let test =
        "console::the_console_logs_in_maps_a_moving_bot_kicks_it_from_the_table_and_feeds_the_kick";
    let Some(binary) = chromium(test) else {
        return;
    };
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    let (status, body) = crate::admin::http(addr, "GET", "/v1/node", Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    let node_name = crate::admin::json(&body)["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let regions = tessera::shared::config::Config::embedded_default()
        .world
        .regions
        .len();
    client_runtime().block_on(async {
        let bot = login(&node, "console-bot").await.unwrap();
        let id = bot.welcome().player.0;
        let walking = tokio::spawn(walk_until_the_end(bot));

        let mut browser = Browser::launch(&binary).await;
        browser
            .page(
                "Page.navigate",
                json!({ "url": format!("http://{addr}/console") }),
            )
            .await;
        browser
            .wait_for(
                "the page loads",
                "document.readyState === 'complete' && !!document.querySelector('#login-form')",
            )
            .await;

        // A wrong key is refused in the page; a viewer's is taken.
        let log_in = |key: &str| {
            format!(
                "document.querySelector('#key').value = {key:?}; \
                 document.querySelector('#login-form').requestSubmit(); true"
            )
        };
        browser.eval(&log_in("not-a-key")).await;
        let refused = browser
            .wait_for(
                "a wrong key is refused",
                "document.querySelector('#login-error').textContent",
            )
            .await;
        assert!(refused.as_str().unwrap().contains("not accepted"), "{refused}");
        assert_eq!(browser.eval("document.querySelector('#app').hidden").await, true);
        // The browser logs the refused request itself; that one is expected.
        browser
            .problems
            .retain(|p| !p.contains("status of 401 (Unauthorized)"));
        browser.eval(&log_in(&admin)).await;
        browser
            .wait_for("logged in", "!document.querySelector('#app').hidden")
            .await;
        let where_ = browser
            .eval("document.querySelector('#where').textContent")
            .await;
        assert!(where_.as_str().unwrap().contains(&node_name), "{where_}");

        // The map: every region, held by this node, and NPC density under them.
        let tiles = browser
            .wait_for(
                "the map shows the regions",
                &format!(
                    "(() => {{ const t = [...document.querySelectorAll('#map-tiles rect[data-region]')]; \
                     return t.length === {regions} && t.every(r => r.dataset.node === {node_name:?}) && t.length; }})()"
                ),
            )
            .await;
        assert_eq!(tiles, regions);
        browser
            .wait_for(
                "the density grid is drawn",
                "(document.querySelector('#map-heat').getAttribute('href') || '').startsWith('data:image/png')",
            )
            .await;

        // The bot is a dot, and the dot moves.
        let dot = format!("#map-players circle[data-player=\"{id}\"]");
        let position = |dot: &str| {
            format!(
                "(() => {{ const d = document.querySelector('{dot}'); \
                 return d && [Number(d.getAttribute('cx')), Number(d.getAttribute('cy'))]; }})()"
            )
        };
        let first = browser
            .wait_for("the bot is on the map", &position(&dot))
            .await;
        browser
            .wait_for(
                "the bot's dot moves",
                &format!(
                    "(() => {{ const p = {}; return p && (p[0] !== {} || p[1] !== {}); }})()",
                    position(&dot),
                    first[0],
                    first[1]
                ),
            )
            .await;

        // Clicking the dot shows the player's details.
        browser
            .eval(&format!(
                "document.querySelector('{dot}').dispatchEvent(new MouseEvent('click', {{ bubbles: true }})); true"
            ))
            .await;
        browser
            .wait_for(
                "the dot's player is shown",
                "document.querySelector('#details').textContent.includes('console-bot')",
            )
            .await;

        // The feed is live before the kick, so that it can show it.
        browser
            .wait_for(
                "the feed connects",
                "document.querySelector('#feed-status').textContent === 'live'",
            )
            .await;

        // A bulk job started from the page over the players the filters select (the bot,
        // online) runs to its end, its progress shown.
        browser
            .eval(
                "document.querySelector('#reason').value = 'console test'; \
                 document.querySelector('#filters select[name=\"online\"]').value = 'true'; \
                 const job = document.querySelector('#job-form'); \
                 job.elements.action.value = 'message'; job.elements.text.value = 'hello from the console'; \
                 job.requestSubmit(); true",
            )
            .await;
        let progress = browser
            .wait_for(
                "the job's progress shows it done",
                "[...document.querySelectorAll('#jobs li')].map(li => li.textContent) \
                 .find(t => t.includes(': done')) || ''",
            )
            .await;
        assert!(
            progress.as_str().unwrap().contains("1 done, 0 failed, 0 skipped of 1"),
            "{progress}"
        );
        assert_eq!(
            browser
                .eval("document.querySelector('#jobs progress').value")
                .await,
            1
        );

        // The players table lists the bot (searching again until the directory has it),
        // and its Kick button kicks it.
        let row = format!("#players tbody tr[data-player=\"{id}\"]");
        browser
            .wait_for(
                "the table lists the bot",
                &format!(
                    "(() => {{ if (document.querySelector('{row}')) return true; \
                     document.querySelector('#filters').requestSubmit(); return false; }})()"
                ),
            )
            .await;
        browser
            .eval(&format!(
                "document.querySelector('#reason').value = 'console test'; \
                 document.querySelector('{row} button[data-act=\"kick\"]').click(); true"
            ))
            .await;
        let result = browser
            .wait_for(
                "the kick is answered",
                "document.querySelector('#action-result').textContent",
            )
            .await;
        assert!(
            result.as_str().unwrap().starts_with(&format!("kick {id}: done")),
            "{result}"
        );
        let ended = tokio::time::timeout(Duration::from_secs(10), walking)
            .await
            .expect("the bot's session ends within 10 s of the kick")
            .unwrap();
        assert!(
            matches!(&ended, ClientError::Kicked(k) if k.reason == KickReason::Admin),
            "{ended}"
        );

        // The feed shows the kick, as the audit recorded it.
        let shown = browser
            .wait_for(
                "the feed shows the kick",
                &format!(
                    "[...document.querySelectorAll('#feed li[data-topic=\"admin\"]')] \
                     .map(li => li.textContent).find(t => t.includes('player.kick') && t.includes('player:{id}')) || ''"
                ),
            )
            .await;
        assert!(shown.as_str().unwrap().contains("console test"), "{shown}");

        assert!(
            browser.problems.is_empty(),
            "the page reported problems: {:#?}",
            browser.problems
        );

        // A viewer's key sees but cannot act: the page says why.
        browser
            .eval("sessionStorage.removeItem('tessera.key'); true")
            .await;
        browser.page("Page.reload", json!({})).await;
        browser
            .wait_for(
                "the page reloads",
                "document.readyState === 'complete' && !!document.querySelector('#login-form') \
                 && document.querySelector('#app').hidden",
            )
            .await;
        browser.eval(&log_in(&viewer)).await;
        browser
            .wait_for("logged in as a viewer", "!document.querySelector('#app').hidden")
            .await;
        browser
            .eval(
                "document.querySelector('#reason').value = 'viewer try'; \
                 document.querySelector('#filters').requestSubmit(); true",
            )
            .await;
        browser
            .wait_for("the table lists the bot", &format!("!!document.querySelector('{row}')"))
            .await;
        browser
            .eval(&format!(
                "document.querySelector('{row} button[data-act=\"kick\"]').click(); true"
            ))
            .await;
        let refused = browser
            .wait_for(
                "the viewer's kick is refused",
                "document.querySelector('#action-result').textContent",
            )
            .await;
        assert!(refused.as_str().unwrap().contains("403"), "{refused}");
        // Beside the refused request, which the browser logs itself.
        browser
            .problems
            .retain(|p| !p.contains("status of 403 (Forbidden)"));
        assert!(
            browser.problems.is_empty(),
            "the page reported problems: {:#?}",
            browser.problems
        );
    });
}

/// In a cluster, any node's map shows the whole world: each region with the node holding
/// it, and a player held by the other node where it stands.
#[test]
fn a_nodes_map_shows_the_whole_cluster() {
    let test = "console::a_nodes_map_shows_the_whole_cluster";
    let Some(pair) = crate::cluster::Pair::start(test) else {
        return;
    };
    let name_of = |node: &crate::net::TestNode| {
        let key = tessera_server::admin::keys::dev_admin_key(&node.dir).unwrap();
        let addr = node.node.as_ref().unwrap().admin_addr;
        let (_, info) = crate::admin::http(addr, "GET", "/v1/node", Some(&key), None);
        crate::admin::json(&info)["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a_name, b_name) = (name_of(&pair.a), name_of(&pair.b));
    let key = tessera_server::admin::keys::dev_admin_key(&pair.a.dir).unwrap();
    let a_addr = pair.a().admin_addr;
    pair.runtime.block_on(async {
        let client = Client::connect(&pair.login(pair.b(), "map-bo"))
            .await
            .unwrap();
        let (player, region) = (client.welcome().player.0, client.welcome().region.0);
        // B publishes its report every second: within a few, A's map has it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (map, shown) = loop {
            let (status, body) = http_async(a_addr, "GET", "/v1/map", Some(&key), None).await;
            assert_eq!(status, 200, "{body}");
            let map = crate::admin::json(&body);
            let shown = map["players"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == player)
                .cloned();
            if let Some(shown) = shown {
                break (map, shown);
            }
            assert!(
                Instant::now() < deadline,
                "A's map shows B's player within 10 s: {map}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(map["node"], a_name.as_str());
        let holders: Vec<(u64, &str)> = map["regions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_u64().unwrap(), r["node"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            holders,
            vec![
                (1, a_name.as_str()),
                (2, b_name.as_str()),
                (3, a_name.as_str()),
                (4, b_name.as_str())
            ]
        );
        assert_eq!(shown["node"], b_name.as_str(), "{shown}");
        assert_eq!(shown["region"], region, "{shown}");
        // The pair's world has no NPCs: the density grid holds the player alone, in its cell.
        let cell = map["heat_cell_m"].as_f64().unwrap();
        let at = |axis: &str| (shown[axis].as_f64().unwrap() / cell).floor() as u64;
        assert_eq!(
            map["heat"],
            serde_json::json!([[at("x"), at("y"), 1, 0]]),
            "{map}"
        );
        client.logout().await.unwrap();
    });
}
