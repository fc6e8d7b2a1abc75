//! `tessera serve`: the node. The tick driver runs on its own thread (inside the rayon
//! pool that steps regions), the QUIC endpoint on a tokio runtime; they meet only through
//! the bounded channels of [`crate::node`].

mod drive;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tessera_shared::config::{Config, NodeMode};

use crate::admin::health::{Health, Probe, spawn_prober};
use crate::admin::keys::ApiKeys;
use crate::admin::metrics::{NodeMetrics, Sources};
use crate::admin::{self, AdminState};
use crate::auth::{self, TicketKeys, TokenVerifier};
use crate::chat::Chat;
use crate::cluster::Cluster;
use crate::control::RegionControl;
use crate::directory::Presence;
use crate::economy::Economy;
use crate::feed::Feed;
use crate::local::LocalRegions;
use crate::net::{self, EndpointStats, tls};
use crate::node::status::StatusBoard;
use crate::node::{Command, Driver, NodeHandle};
use crate::players::Players;
use crate::reload::{self, ReloadSource, Reloader};
use crate::snapshots::Snapshots;
use drive::{Observers, drive};
use tessera_persistence::bus::BusConfig;
use tessera_persistence::embedded::EmbeddedStore;
use tessera_persistence::leaderboard::Leaderboards;
use tessera_persistence::mongo::MongoStore;
use tessera_persistence::node_store::NodeStore;
use tessera_persistence::redis_bus::Pinger;
use tessera_persistence::redis_bus::RedisBus;
use tessera_shared::ids::{PlayerId, RegionId};

/// A driver that falls further behind than this skips ahead instead of bursting ticks to
/// catch up (a burst would stall clients more than the skip does).
pub const CATCH_UP_MAX: Duration = Duration::from_secs(1);
/// tokio worker threads for the network edge.
pub const NET_THREADS: usize = 2;

/// What a node proves itself and its clients with.
pub struct Credentials {
    /// Checks login tokens.
    pub verifier: TokenVerifier,
    /// Mints and checks resume and redirect tickets.
    pub tickets: TicketKeys,
    /// The endpoint's certificate and key.
    pub identity: tls::Identity,
}

impl Credentials {
    /// The credentials `config` names: `[auth]` and `[tls]` files, or (where a path is
    /// empty, dev mode only) generated dev ones in `data_dir`.
    pub fn from_config(config: &Config) -> anyhow::Result<Credentials> {
        let node = &config.node;
        let dev_allowed = node.mode == NodeMode::Dev;
        let read = |path: &Path, what: &str| {
            std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
        };
        let token_key = match &node.auth.key_file {
            Some(path) => read(path, "[auth] key_file")?,
            None if dev_allowed => auth::dev_secret(&node.data_dir)?,
            None => anyhow::bail!("production mode needs [auth] key_file"),
        };
        let verifier = TokenVerifier::new(
            node.auth.algorithm,
            &token_key,
            &node.auth.issuer,
            &node.auth.audience,
        )
        .context("[auth] key_file")?;
        let ticket_secret = match &node.auth.ticket_secret_file {
            Some(path) => read(path, "[auth] ticket_secret_file")?,
            None if dev_allowed => {
                auth::generated_secret(&node.data_dir, auth::DEV_TICKET_SECRET_FILE)?
            }
            None => anyhow::bail!("production mode needs [auth] ticket_secret_file"),
        };
        let tickets = TicketKeys::new(&ticket_secret).context("[auth] ticket_secret_file")?;
        let identity = match (&node.tls.cert_file, &node.tls.key_file) {
            (Some(cert), Some(key)) => tls::identity_from_pem_files(cert, key)?,
            (None, None) if dev_allowed => tls::dev_identity(&node.data_dir)?,
            _ => anyhow::bail!(
                "[tls] cert_file and key_file must be given together (both empty: a dev certificate, dev mode only)"
            ),
        };
        Ok(Credentials {
            verifier,
            tickets,
            identity,
        })
    }
}

/// How to run the node.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Stop after this many ticks (for tests and scripted runs); `None` runs until
    /// SIGINT or SIGTERM.
    pub ticks: Option<u64>,
    /// Seed of every region's RNG.
    pub seed: u64,
    /// The config directory the node was loaded from: its `balance.toml` is watched and
    /// reloaded (`None`: the embedded default, nothing to reload).
    pub config_dir: Option<std::path::PathBuf>,
}

pub use crate::node::status::STATUS_PUBLISH_INTERVAL;

/// A node running in this process.
pub struct RunningNode {
    /// The QUIC address it listens on.
    pub addr: SocketAddr,
    /// The admin HTTP API's address.
    pub admin_addr: SocketAddr,
    /// What the driver publishes (status, heartbeat).
    pub board: Arc<StatusBoard>,
    /// Its certificate (DER), for clients to pin.
    pub cert_der: Vec<u8>,
    /// Endpoint counters.
    pub stats: Arc<EndpointStats>,
    /// What the node holds, updated every tick.
    pub gauges: Arc<NodeGauges>,
    /// Its live feed: an embedding game may publish events of its own.
    pub feed: Feed,
    stop: Arc<AtomicBool>,
    node: NodeHandle,
    /// The watch on balance.toml (dropped with the node).
    _watch: Option<reload::Watch>,
    /// Region control (the cluster is left at a graceful stop).
    control: Arc<RegionControl>,
    driver: Option<JoinHandle<()>>,
    endpoint: quinn::Endpoint,
    runtime: Option<tokio::runtime::Runtime>,
}

/// What a running node holds, as of its last tick.
#[derive(Debug, Default)]
pub struct NodeGauges {
    /// Player avatars in its regions.
    pub players: std::sync::atomic::AtomicUsize,
}

impl RunningNode {
    /// Starts a node for `config` with the credentials it names (generated dev ones in
    /// `data_dir` where it names none, which only dev mode allows).
    pub fn start_configured(
        config: Arc<Config>,
        options: &ServeOptions,
    ) -> anyhow::Result<RunningNode> {
        let credentials = Credentials::from_config(&config)?;
        Self::start(config, options, credentials)
    }

    /// Starts a node with the given credentials.
    pub fn start(
        config: Arc<Config>,
        options: &ServeOptions,
        credentials: Credentials,
    ) -> anyhow::Result<RunningNode> {
        let Credentials {
            verifier,
            tickets,
            identity,
        } = credentials;
        let cert_der = identity.chain[0].to_vec();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(NET_THREADS)
            .thread_name("tessera-net")
            .enable_all()
            .build()
            .context("starting the network runtime")?;
        let server_config = tls::server_config(identity)?;
        let listen = config.node.quic_listen;
        let endpoint = runtime
            .block_on(async { quinn::Endpoint::server(server_config, listen) })
            .with_context(|| format!("binding the QUIC endpoint on {listen}"))?;
        let addr = endpoint.local_addr().context("the endpoint's address")?;
        let store = open_store(&runtime, &config)?;
        let probe_store = store.clone();
        tracing::info!(store = store.kind(), "player and snapshot store");
        let held = held_regions(&config)?;
        let stored = runtime
            .block_on(crate::snapshots::load_all(
                &store,
                held.iter().copied(),
                crate::snapshots::LOAD_TIMEOUT,
            ))
            .context("loading the regions' snapshots")?;
        // One past the newest snapshot's epoch; with a cluster, the lease's (at least that).
        let mut epochs: BTreeMap<RegionId, u64> = held
            .iter()
            .map(|&r| (r, stored.get(&r).map_or(1, |s| s.epoch + 1)))
            .collect();
        let mut chat_bus = None;
        let mut feed_bus = None;
        let mut leaderboards = Leaderboards::local();
        let cluster = match &config.node.services.redis_url {
            None => None,
            Some(url) => {
                let cluster = runtime.block_on(Cluster::connect(url, &config.node.name))?;
                // The chat has a connection (and a breaker) of its own: a flood of chat
                // never delays handoffs.
                let bus = runtime
                    .block_on(RedisBus::connect(url, BusConfig::default()))
                    .map_err(|e| anyhow::anyhow!("connecting the chat to Redis: {e}"))?;
                chat_bus = Some((bus, cluster.locations()));
                // The live feed too: its own connection and channel.
                let feed_config = BusConfig {
                    broadcast_channel: "tessera:feed",
                    ..BusConfig::default()
                };
                feed_bus = Some(
                    runtime
                        .block_on(RedisBus::connect(url, feed_config))
                        .map_err(|e| anyhow::anyhow!("connecting the feed to Redis: {e}"))?,
                );
                let commands = runtime
                    .block_on(tessera_persistence::redis_bus::connection(url))
                    .map_err(|e| anyhow::anyhow!("connecting the leaderboards to Redis: {e}"))?;
                leaderboards = Leaderboards::redis(commands);
                let leases = runtime.block_on(cluster.acquire(&epochs))?;
                for lease in &leases {
                    epochs.insert(lease.region, lease.epoch);
                }
                let advertise = config
                    .node
                    .cluster
                    .advertise_addr
                    .clone()
                    .unwrap_or_else(|| addr.to_string());
                let advertised = runtime.block_on(cluster.advertise(&advertise))?;
                tracing::info!(regions = ?held.iter().map(|r| r.0).collect::<Vec<_>>(), %advertise, "region leases taken");
                let _guard = runtime.enter();
                Some(cluster.start(&config, leases, advertise, advertised))
            }
        };
        let (mut driver, mut node) =
            restore_regions(&config, options.seed, stored, &held, &epochs)?;
        let cluster_control = cluster.map(|(link, handle, control)| {
            driver.join_cluster(link, handle, &mut node);
            control
        });
        let feed = {
            let _guard = runtime.enter();
            match feed_bus {
                Some(bus) => Feed::clustered(&config.node.name, bus),
                None => Feed::local(&config.node.name),
            }
        };
        driver.publish_to(feed.clone());
        let (players, presence, economy, snapshots) = {
            let _guard = runtime.enter();
            let presence = Presence::start(store.clone());
            (
                Arc::new(Players::start(store.clone())),
                presence.clone(),
                Economy::start(store.clone(), leaderboards, Some(presence)),
                Snapshots::start(store, epochs, driver.take_snapshot_encoders()),
            )
        };
        let chat = {
            let _guard = runtime.enter();
            economy.fill_local_leaderboards();
            Chat::start_for(&config.node.chat, node.clone(), chat_bus)?
        };
        driver.save_players_to(players.saves());
        driver.record_presence_to(presence.clone());
        driver.commit_economy_to(economy.requests());
        driver.snapshot_to(snapshots.clone());
        let save_stats = players.stats.clone();
        let stats = Arc::new(EndpointStats::default());
        let board = Arc::new(StatusBoard::default());
        let probes = {
            let _guard = runtime.enter();
            start_probes(&runtime, &config, &probe_store)?
        };
        let reloader = Arc::new(Reloader::new(
            options.config_dir.clone().map(|dir| ReloadSource {
                dir,
                env: tessera_shared::config::process_env().unwrap_or_default(),
            }),
            config.clone(),
            node.clone(),
        ));
        let health = Arc::new(Health {
            board: board.clone(),
            probes: probes.clone(),
            saves: save_stats.clone(),
            snapshots: snapshots.stats.clone(),
            reloader: Some(reloader.clone()),
        });
        let metrics = Arc::new(NodeMetrics::new(Sources {
            board: board.clone(),
            endpoint: stats.clone(),
            saves: save_stats.clone(),
            presence: presence.stats().clone(),
            feed: feed.stats().clone(),
            economy: economy.stats.clone(),
            chat: chat.stats().clone(),
            snapshots: snapshots.stats.clone(),
            probes,
            store: probe_store.clone(),
            bus: cluster_control.as_ref().map(|c| c.shared.clone()),
            reloader: Some(reloader.clone()),
        }));
        let audit = Arc::new(admin::Audit::new(
            probe_store.clone(),
            config.node.name.clone(),
            Some(feed.clone()),
        ));
        {
            let _guard = runtime.enter();
            admin::feed::spawn_reporter(feed.clone(), board.clone(), health.clone());
        }
        let watch = match reloader.source() {
            Some(source) => {
                let file = source.balance_file();
                let (watch, notices) =
                    reload::watch(&file).with_context(|| format!("watching {}", file.display()))?;
                let _guard = runtime.enter();
                tokio::spawn(admin::follow_reloads(
                    notices,
                    reloader.clone(),
                    audit.clone(),
                ));
                tracing::info!(file = %file.display(), "watching balance.toml for changes");
                Some(watch)
            }
            None => None,
        };
        let control = Arc::new(RegionControl::new(
            config.clone(),
            options.seed,
            probe_store.clone(),
            snapshots.clone(),
            node.clone(),
            cluster_control,
        ));
        runtime.spawn(control.clone().follow_assignments());
        let keys = ApiKeys::load(
            config.node.admin.keys_file.as_deref(),
            config.node.mode == NodeMode::Dev,
            &config.node.data_dir,
        )
        .context("[admin] keys_file")?;
        let admin_listen = config.node.admin_listen;
        let admin_listener = runtime
            .block_on(tokio::net::TcpListener::bind(admin_listen))
            .with_context(|| format!("binding the admin API on {admin_listen}"))?;
        let admin_addr = admin_listener
            .local_addr()
            .context("the admin API's address")?;
        runtime.spawn(control.clone().publish_load(
            board.clone(),
            admin_addr.to_string(),
            addr.to_string(),
        ));
        {
            let _guard = runtime.enter();
            let admin_state = Arc::new(AdminState {
                keys,
                node_name: config.node.name.clone(),
                quic_addr: addr.to_string(),
                admin_addr: admin_addr.to_string(),
                store_kind: probe_store.kind(),
                node: node.clone(),
                board: board.clone(),
                health,
                metrics: metrics.clone(),
                audit,
                reloader,
                regions: control.clone(),
                store: probe_store.clone(),
                economy: economy.clone(),
                feed: feed.clone(),
                jobs: admin::Jobs::default(),
            });
            // Before any new job: those this node ran when it stopped are interrupted.
            runtime.block_on(admin::interrupt_stale_jobs(&admin_state));
            admin::spawn(admin_listener, admin_state);
        }
        runtime.spawn(net::accept_loop(
            endpoint.clone(),
            node.clone(),
            Arc::new(net::Auth {
                verifier,
                tickets,
                logins: net::login_limit::LoginLimiter::new(config.node.login_limit),
            }),
            net::SessionServices {
                players,
                economy: Some(economy.clone()),
                chat: chat.clone(),
            },
            stats.clone(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let pool = sim_pool(config.node.sim_threads as usize)?;
        let driver_stop = stop.clone();
        let gauges = Arc::new(NodeGauges::default());
        let driver_gauges = gauges.clone();
        let driver_board = board.clone();
        let ticks = options.ticks;
        let driver = std::thread::Builder::new()
            .name("tessera-driver".into())
            .spawn(move || {
                pool.install(|| {
                    drive(
                        driver,
                        Observers {
                            saves: &save_stats,
                            snapshots: &snapshots.stats,
                            gauges: &driver_gauges,
                            board: &driver_board,
                            metrics: &metrics,
                        },
                        &driver_stop,
                        ticks,
                    )
                })
            })
            .context("starting the tick driver")?;
        tracing::info!(%addr, %admin_addr, node = %config.node.name, regions = config.world.regions.len(), "node running");
        Ok(RunningNode {
            addr,
            admin_addr,
            board,
            _watch: watch,
            control,
            cert_der,
            stats,
            gauges,
            feed,
            stop,
            node,
            driver: Some(driver),
            endpoint,
            runtime: Some(runtime),
        })
    }

    /// Sends `player` to the node at `addr` (into its `region`): the client gets a
    /// `Redirect` with a ticket that node accepts (a cluster shares its ticket secret), and
    /// the avatar leaves this node. `Err` if the driver's inbox is full.
    pub fn redirect(&self, player: PlayerId, addr: String, region: RegionId) -> anyhow::Result<()> {
        self.node
            .try_send(Command::Redirect {
                player,
                addr,
                region,
            })
            .map_err(|_| anyhow::anyhow!("the node is saturated; retry"))
    }

    /// Blocks until the driver stops (its tick budget ran out) or SIGINT/SIGTERM arrives.
    pub fn wait(mut self) {
        let stop = self.stop.clone();
        if let Some(runtime) = &self.runtime {
            runtime.block_on(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                loop {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => break,
                        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {
                            if stop.load(Ordering::Relaxed) { break; }
                        }
                    }
                }
            });
        }
        self.shutdown_inner();
    }

    /// Stops the node: no new connections, sessions closed, driver stopped.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.endpoint.close(0u32.into(), b"node shutting down");
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
        if let Some(runtime) = self.runtime.take() {
            // The final snapshots are durable (the driver flushed them): the regions can
            // go to other nodes now rather than when the leases lapse.
            let control = self.control.clone();
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), control.leave_cluster()).await
            });
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
        tracing::info!("node stopped");
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            self.shutdown_inner();
        }
    }
}

/// The store `[services] mongodb_uri` names, or the embedded one in the data dir. A
/// MongoDB that cannot be reached at start is an error (within its selection timeout).
fn open_store(runtime: &tokio::runtime::Runtime, config: &Config) -> anyhow::Result<NodeStore> {
    let services = &config.node.services;
    match &services.mongodb_uri {
        Some(uri) => {
            let store = runtime
                .block_on(MongoStore::connect(uri, &services.mongodb_database))
                .context("connecting to MongoDB ([services] mongodb_uri)")?;
            Ok(NodeStore::mongo(store))
        }
        None => {
            let dir = &config.node.data_dir;
            let store = EmbeddedStore::open(dir)
                .with_context(|| format!("opening the embedded store in {}", dir.display()))?;
            Ok(NodeStore::embedded(store))
        }
    }
}

/// The regions this node takes at start: `[cluster] regions`; an empty list means every
/// region of the world for a node on its own, and none for a node of a cluster (an
/// orchestrator assigns them through the admin API).
fn held_regions(config: &Config) -> anyhow::Result<Vec<RegionId>> {
    let world: Vec<RegionId> = config.world.regions.iter().map(|r| r.id).collect();
    let listed = &config.node.cluster.regions;
    if listed.is_empty() {
        return Ok(match config.node.services.redis_url {
            None => world,
            Some(_) => Vec::new(),
        });
    }
    if config.node.services.redis_url.is_none() && listed.len() < world.len() {
        anyhow::bail!(
            "[cluster] regions names only some regions, but without [services] redis_url there is no other node to hold the rest"
        );
    }
    if let Some(unknown) = listed.iter().find(|r| !world.contains(r)) {
        anyhow::bail!(
            "[cluster] regions names region {}, which world.toml does not define",
            unknown.0
        );
    }
    Ok(listed.clone())
}

/// The `held` regions from their last committed snapshots in `stored` (new where there
/// is none).
fn restore_regions(
    config: &Arc<Config>,
    seed: u64,
    stored: BTreeMap<RegionId, tessera_persistence::RegionSnapshot>,
    held: &[RegionId],
    epochs: &BTreeMap<RegionId, u64>,
) -> anyhow::Result<(Driver, NodeHandle)> {
    let cells = stored
        .into_iter()
        .map(|(region, snapshot)| (region, snapshot.cells))
        .collect();
    let (mut local, restored) = LocalRegions::restore(config.clone(), seed, &cells, held)
        .context("restoring the regions from their snapshots")?;
    for (&id, &epoch) in epochs {
        if let Some(region) = local.region_mut(id) {
            region.set_epoch(epoch);
        }
    }
    for (region, stats) in &restored {
        if stats.dropped > 0 {
            tracing::warn!(
                region = region.0,
                dropped = stats.dropped,
                "NPCs left out of the restore: the config no longer fits them"
            );
        }
    }
    let tick = local.regions().first().map_or(0, |r| r.tick());
    tracing::info!(
        restored = restored.len(),
        tick,
        npcs = restored.iter().map(|(_, s)| s.npcs).sum::<usize>(),
        "regions restored from snapshots"
    );
    Ok(Driver::with_regions(config.clone(), local))
}

/// Starts a probe per shared service the node uses (none on the embedded default).
fn start_probes(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    store: &NodeStore,
) -> anyhow::Result<Vec<Arc<Probe>>> {
    let mut probes = Vec::new();
    if config.node.services.mongodb_uri.is_some() {
        let probe = Probe::new("mongodb");
        let store = store.clone();
        spawn_prober(probe.clone(), move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        });
        probes.push(probe);
    }
    if let Some(url) = &config.node.services.redis_url {
        let pinger = runtime
            .block_on(Pinger::connect(url))
            .map_err(|e| anyhow::anyhow!("connecting to Redis ([services] redis_url): {e}"))?;
        let probe = Probe::new("redis");
        spawn_prober(probe.clone(), move || {
            let pinger = pinger.clone();
            async move { pinger.ping().await.map_err(|e| e.to_string()) }
        });
        probes.push(probe);
    }
    Ok(probes)
}

/// The rayon pool that steps regions: `threads` threads, or one per core if 0.
pub fn sim_pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("tessera-sim-{i}"))
        .build()
        .context("starting the simulation thread pool")
}

/// Runs a node until its tick budget runs out or it is signalled.
pub fn run_node(config: Arc<Config>, options: &ServeOptions) -> anyhow::Result<()> {
    let node = RunningNode::start_configured(config.clone(), options)?;
    eprintln!(
        "{}",
        crate::settings::connect_help(
            &config,
            options.config_dir.as_deref(),
            node.addr,
            node.admin_addr
        )
    );
    node.wait();
    Ok(())
}
