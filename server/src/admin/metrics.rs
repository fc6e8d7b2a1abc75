//! Prometheus metrics of one node, served at `/metrics`.
//!
//! A recorder of the node's own (not the process-global one: tests run several nodes in
//! one process). Tick durations are histograms the driver records into every tick;
//! everything else already exists as a counter or gauge somewhere (the endpoint's
//! atomics, the save and snapshot writers', the driver's published status, the probes)
//! and is copied into the recorder when scraped, so nothing is counted twice.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tessera_persistence::node_store::NodeStore;
use tessera_shared::ids::RegionId;

use super::health::Probe;
use crate::cluster::Shared;
use crate::economy::EconomyStats;
use crate::net::EndpointStats;
use crate::node::status::StatusBoard;
use crate::players::SaveStats;
use crate::snapshots::SnapshotStats;

/// Tick duration buckets, in seconds: around a 50 ms (20 Hz) budget.
const TICK_BUCKETS_S: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.010, 0.020, 0.035, 0.050, 0.075, 0.100, 0.250, 1.0,
];

const METADATA: Metadata<'static> = Metadata::new("tessera", Level::INFO, None);

/// What the metrics are read from.
#[derive(Debug)]
pub struct Sources {
    /// The driver's published status and counters.
    pub board: Arc<StatusBoard>,
    /// The QUIC endpoint's counters.
    pub endpoint: Arc<EndpointStats>,
    /// Player saves.
    pub saves: Arc<SaveStats>,
    /// Player directory updates.
    pub presence: Arc<crate::directory::PresenceStats>,
    /// The live feed.
    pub feed: Arc<crate::feed::FeedStats>,
    /// Economy transactions.
    pub economy: Arc<EconomyStats>,
    /// Chat.
    pub chat: Arc<crate::chat::ChatStats>,
    /// Region snapshots.
    pub snapshots: Arc<SnapshotStats>,
    /// Dependency probes.
    pub probes: Vec<Arc<Probe>>,
    /// The store (its circuit breaker).
    pub store: NodeStore,
    /// The held regions' mail on the bus (cluster nodes only).
    pub bus: Option<Arc<Shared>>,
    /// Balance reloads.
    pub reloader: Option<Arc<crate::reload::Reloader>>,
}

/// The node's metrics.
pub struct NodeMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    sources: Sources,
    node_tick: Histogram,
    region_ticks: Mutex<HashMap<RegionId, Histogram>>,
    reloads_applied: Counter,
    reloads_refused: Counter,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// Metrics over `sources`.
    pub fn new(sources: Sources) -> NodeMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("tick_duration_seconds".into()),
                TICK_BUCKETS_S,
            )
            .expect("the tick buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        for (name, unit, help) in DESCRIPTIONS {
            // Kind-specific describe calls all land in one table of help texts.
            recorder.describe_gauge((*name).into(), *unit, (*help).into());
        }
        let node_tick = recorder.register_histogram(
            &Key::from_name("tessera_node_tick_duration_seconds"),
            &METADATA,
        );
        let reloads = |result: &'static str| {
            recorder.register_counter(
                &Key::from_parts(
                    "tessera_balance_reloads_total",
                    vec![Label::new("result", result)],
                ),
                &METADATA,
            )
        };
        let (reloads_applied, reloads_refused) = (reloads("applied"), reloads("refused"));
        NodeMetrics {
            node_tick,
            reloads_applied,
            reloads_refused,
            recorder,
            handle,
            sources,
            region_ticks: Mutex::new(HashMap::new()),
        }
    }

    /// Records one whole tick's duration.
    pub fn record_tick(&self, duration: std::time::Duration) {
        self.node_tick.record(duration.as_secs_f64());
    }

    /// Records `region`'s step duration.
    pub fn record_region_tick(&self, region: RegionId, duration: std::time::Duration) {
        let mut ticks = self.region_ticks.lock().unwrap_or_else(|e| e.into_inner());
        ticks
            .entry(region)
            .or_insert_with(|| {
                self.recorder.register_histogram(
                    &Key::from_parts(
                        "tessera_region_tick_duration_seconds",
                        vec![Label::new("region", region.0.to_string())],
                    ),
                    &METADATA,
                )
            })
            .record(duration.as_secs_f64());
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, String)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, String)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    /// The metrics in the Prometheus text format, read from their sources now.
    pub fn render(&self) -> String {
        self.collect();
        self.handle.run_upkeep();
        self.handle.render()
    }

    fn collect(&self) {
        let Sources {
            board,
            endpoint,
            saves,
            presence,
            feed,
            economy,
            chat,
            snapshots,
            probes,
            store,
            bus,
            reloader,
        } = &self.sources;
        if let Some(reloader) = reloader {
            let (applied, refused) = reloader.counts();
            self.reloads_applied.absolute(applied);
            self.reloads_refused.absolute(refused);
        }
        let status = board.status();
        let none: &[(&str, String)] = &[];
        self.gauge("tessera_tick", none).set(status.tick as f64);
        self.gauge("tessera_players", none)
            .set(status.players as f64);
        self.gauge("tessera_entities", none)
            .set(status.entities as f64);
        for region in &status.regions {
            let labels = [("region", region.id.to_string())];
            self.gauge("tessera_region_players", &labels)
                .set(region.players as f64);
            self.gauge("tessera_region_entities", &labels)
                .set(region.entities as f64);
            self.gauge("tessera_region_lease_held", &labels).set(1.0);
        }
        let c = &status.counters;
        self.gauge("tessera_inbox_depth", none)
            .set(c.inbox_depth as f64);
        let dropped = [
            (
                "rate_limited",
                endpoint.inputs_rate_limited.load(Ordering::Relaxed),
            ),
            (
                "node_busy",
                endpoint.inputs_node_busy.load(Ordering::Relaxed),
            ),
            ("over_region_limit", c.inputs_over_limit),
            ("stale_sequence", c.inputs_stale),
            ("unknown_player", c.inputs_unknown_player),
            ("frozen", c.inputs_frozen),
            ("non_finite", c.inputs_non_finite),
            ("stale_session", c.inputs_stale_session),
        ];
        for (reason, n) in dropped {
            self.counter("tessera_inputs_dropped_total", &[("reason", reason.into())])
                .absolute(n);
        }
        self.counter("tessera_inputs_applied_total", none)
            .absolute(c.inputs_applied);
        for (direction, bytes, datagrams) in [
            (
                "in",
                endpoint.payload_bytes_in.load(Ordering::Relaxed),
                endpoint.datagrams_in.load(Ordering::Relaxed),
            ),
            (
                "out",
                endpoint.payload_bytes_out.load(Ordering::Relaxed),
                endpoint.datagrams_out.load(Ordering::Relaxed),
            ),
        ] {
            let labels = [("direction", direction.to_string())];
            self.counter("tessera_payload_bytes_total", &labels)
                .absolute(bytes);
            self.counter("tessera_datagrams_total", &labels)
                .absolute(datagrams);
        }
        self.counter("tessera_states_dropped_total", none)
            .absolute(c.states_dropped);
        self.counter("tessera_state_bytes_total", none)
            .absolute(c.state_bytes);
        for (name, n) in [
            ("tessera_clients_over_budget", c.clients_over_budget),
            ("tessera_state_changes_waiting", c.state_changes_waiting),
            ("tessera_state_staleness_ticks", c.state_staleness_ticks),
        ] {
            self.gauge(name, none).set(n as f64);
        }
        self.gauge("tessera_connections", none)
            .set(endpoint.connections.load(Ordering::Relaxed) as f64);
        for (name, n) in [
            ("tessera_connections_refused_total", &endpoint.refused),
            ("tessera_quic_retries_total", &endpoint.retries),
            ("tessera_protocol_violations_total", &endpoint.violations),
            ("tessera_resumes_total", &endpoint.resumes),
            ("tessera_kicked_resumes_total", &endpoint.kicked_resumes),
            (
                "tessera_state_streams_busy_total",
                &endpoint.state_streams_busy,
            ),
        ] {
            self.counter(name, none).absolute(n.load(Ordering::Relaxed));
        }
        let stale = c.handoffs_stale;
        for (kind, n) in [
            ("local", c.handoffs_local),
            ("out", c.handoffs_out),
            ("in", c.handoffs_in),
            ("stale", stale),
        ] {
            self.counter("tessera_handoffs_total", &[("kind", kind.into())])
                .absolute(n);
        }
        self.counter("tessera_redirects_total", none)
            .absolute(c.redirected);
        for (reason, n) in [
            (
                "elsewhere",
                endpoint.logins_held_elsewhere.load(Ordering::Relaxed),
            ),
            ("moving", c.logins_refused_moving),
        ] {
            self.counter("tessera_logins_held_total", &[("reason", reason.into())])
                .absolute(n);
        }
        self.counter("tessera_logins_abandoned_total", none)
            .absolute(c.logins_abandoned);
        self.counter("tessera_logins_rate_limited_total", none)
            .absolute(endpoint.logins_rate_limited.load(Ordering::Relaxed));
        self.counter("tessera_ghost_gaps_total", none)
            .absolute(c.ghost_gaps);
        self.counter("tessera_ghosts_dropped_total", none)
            .absolute(c.ghosts_dropped);
        self.gauge("tessera_bus_backlog", none)
            .set(c.bus_backlog as f64);
        if let Some(bus) = bus {
            self.gauge("tessera_bus_breaker_open", none)
                .set(f64::from(u8::from(bus.bus_stats.breaker_open())));
        }
        for (region, mail) in bus.iter().flat_map(|b| b.bus_stats.regions()) {
            let labels = [("region", region.0.to_string())];
            self.gauge("tessera_bus_pending", &labels)
                .set(mail.pending as f64);
            self.gauge("tessera_bus_dead_letters", &labels)
                .set(mail.dead_letters as f64);
        }
        self.counter(
            "tessera_player_saves_total",
            &[("result", "durable".into())],
        )
        .absolute(saves.saved.load(Ordering::Relaxed));
        self.counter("tessera_player_saves_total", &[("result", "failed".into())])
            .absolute(saves.failed.load(Ordering::Relaxed));
        self.counter(
            "tessera_player_saves_total",
            &[("result", "dropped".into())],
        )
        .absolute(c.saves_dropped);
        for (kind, n) in [
            ("published", feed.published.load(Ordering::Relaxed)),
            ("received", feed.received.load(Ordering::Relaxed)),
            ("dropped", feed.dropped.load(Ordering::Relaxed)),
        ] {
            self.counter("tessera_feed_events_total", &[("kind", kind.into())])
                .absolute(n);
        }
        self.gauge("tessera_feed_subscribers", none)
            .set(feed.subscribers.load(Ordering::Relaxed) as f64);
        self.counter("tessera_feed_slow_subscribers_total", none)
            .absolute(feed.slow_subscribers.load(Ordering::Relaxed));
        for (result, n) in [
            ("written", presence.written.load(Ordering::Relaxed)),
            ("dropped", presence.dropped.load(Ordering::Relaxed)),
            ("failed", presence.failed.load(Ordering::Relaxed)),
        ] {
            self.counter(
                "tessera_directory_updates_total",
                &[("result", result.into())],
            )
            .absolute(n);
        }
        for (result, n) in [
            ("applied", economy.applied.load(Ordering::Relaxed)),
            ("duplicate", economy.duplicates.load(Ordering::Relaxed)),
            ("refused", economy.refused.load(Ordering::Relaxed)),
            ("failed", economy.failed.load(Ordering::Relaxed)),
            ("dropped", c.economy_dropped),
        ] {
            self.counter(
                "tessera_economy_transactions_total",
                &[("result", result.into())],
            )
            .absolute(n);
        }
        self.counter("tessera_economy_retries_total", none)
            .absolute(economy.retries.load(Ordering::Relaxed));
        self.counter("tessera_leaderboard_update_failures_total", none)
            .absolute(economy.leaderboard_failed.load(Ordering::Relaxed));
        for (channel, n) in ["say", "region", "global", "whisper"]
            .iter()
            .zip(&chat.sent)
        {
            self.counter(
                "tessera_chat_messages_total",
                &[("channel", (*channel).into())],
            )
            .absolute(n.load(Ordering::Relaxed));
        }
        for (result, n) in [
            ("refused", chat.refused.load(Ordering::Relaxed)),
            ("published", chat.published.load(Ordering::Relaxed)),
            (
                "publish_failed",
                chat.publish_failed.load(Ordering::Relaxed),
            ),
            ("received", chat.received.load(Ordering::Relaxed)),
            ("lost", chat.lost.load(Ordering::Relaxed)),
            ("dropped", chat.dropped.load(Ordering::Relaxed)),
            ("recipient_dropped", c.chat_dropped),
        ] {
            self.counter("tessera_chat_events_total", &[("event", result.into())])
                .absolute(n);
        }
        self.counter("tessera_snapshot_commits_total", none)
            .absolute(snapshots.committed.load(Ordering::Relaxed));
        self.gauge("tessera_snapshot_flush_seconds", none)
            .set(snapshots.last_commit_ms.load(Ordering::Relaxed) as f64 / 1e3);
        let committed = snapshots.committed_tick.load(Ordering::Relaxed);
        let age_s = if status.tick_hz == 0 || committed == 0 {
            0.0
        } else {
            status.tick.saturating_sub(committed) as f64 / f64::from(status.tick_hz)
        };
        self.gauge("tessera_snapshot_age_seconds", none).set(age_s);
        self.gauge("tessera_snapshot_outbox_bytes", none)
            .set(snapshots.outbox_bytes.load(Ordering::Relaxed) as f64);
        self.counter("tessera_snapshot_captures_skipped_total", none)
            .absolute(c.captures_skipped);
        for (service, degraded) in [
            ("player_saves", saves.degraded.load(Ordering::Relaxed)),
            ("directory", presence.degraded.load(Ordering::Relaxed)),
            ("snapshots", snapshots.degraded.load(Ordering::Relaxed)),
        ] {
            self.gauge("tessera_writes_waiting", &[("writer", service.into())])
                .set(f64::from(u8::from(degraded)));
        }
        self.gauge("tessera_store_breaker_open", none)
            .set(f64::from(u8::from(store.is_degraded())));
        for probe in probes {
            self.gauge("tessera_dependency_up", &[("service", probe.name().into())])
                .set(f64::from(u8::from(probe.is_up())));
        }
    }
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}

/// Every metric's help text (and unit).
/// The names of every metric a node exports (some only on a cluster node, or once
/// something happened), for dashboards and alert rules to be checked against.
pub fn metric_names() -> impl Iterator<Item = &'static str> {
    DESCRIPTIONS.iter().map(|(name, _, _)| *name)
}

const DESCRIPTIONS: &[(&str, Option<Unit>, &str)] = &[
    (
        "tessera_node_tick_duration_seconds",
        Some(Unit::Seconds),
        "Duration of whole ticks: commands, region steps, fan-out.",
    ),
    (
        "tessera_region_tick_duration_seconds",
        Some(Unit::Seconds),
        "Duration of one region's step.",
    ),
    ("tessera_tick", None, "The simulation tick."),
    (
        "tessera_players",
        None,
        "Player avatars in the node's regions.",
    ),
    ("tessera_entities", None, "Entities in the node's regions."),
    (
        "tessera_region_players",
        None,
        "Player avatars in the region.",
    ),
    ("tessera_region_entities", None, "Entities in the region."),
    (
        "tessera_region_lease_held",
        None,
        "1 while this node holds the region.",
    ),
    (
        "tessera_inbox_depth",
        None,
        "Session commands waiting for the driver at the last tick.",
    ),
    (
        "tessera_inputs_dropped_total",
        None,
        "Client inputs dropped, by reason.",
    ),
    (
        "tessera_inputs_applied_total",
        None,
        "Client inputs applied by the regions.",
    ),
    (
        "tessera_payload_bytes_total",
        None,
        "Protocol payload bytes to and from clients (QUIC overhead excluded).",
    ),
    (
        "tessera_datagrams_total",
        None,
        "Datagrams to and from clients.",
    ),
    (
        "tessera_states_dropped_total",
        None,
        "States a session never sent: replaced by a newer one before it could (it fell behind).",
    ),
    (
        "tessera_state_bytes_total",
        None,
        "Bytes of the states encoded for clients ([net] state_kbit_per_s bounds each client's).",
    ),
    (
        "tessera_clients_over_budget",
        None,
        "Clients with changes waiting for room in their state budgets, as of the last tick.",
    ),
    (
        "tessera_state_changes_waiting",
        None,
        "Changes to clients' views waiting for room in their budgets, as of the last tick.",
    ),
    (
        "tessera_state_staleness_ticks",
        None,
        "The longest any change sent in the last tick had waited, in ticks ([net] state_staleness_ticks_max bounds it).",
    ),
    ("tessera_connections", None, "Open client connections."),
    (
        "tessera_connections_refused_total",
        None,
        "Connections refused at the connection cap.",
    ),
    (
        "tessera_quic_retries_total",
        None,
        "QUIC Retry packets sent (handshake load).",
    ),
    (
        "tessera_protocol_violations_total",
        None,
        "Sessions ended for breaking the protocol.",
    ),
    (
        "tessera_resumes_total",
        None,
        "Logins that resumed a dropped session.",
    ),
    (
        "tessera_kicked_resumes_total",
        None,
        "Resumes of sessions an operator kicked, answered with the kick (the client had missed it).",
    ),
    (
        "tessera_state_streams_busy_total",
        None,
        "States too large for a datagram dropped because their connection already had STATE_STREAMS_IN_FLIGHT_MAX (2) on streams its client had not acknowledged.",
    ),
    (
        "tessera_handoffs_total",
        None,
        "Border handoffs: between local regions, out to and in from other nodes, and in but stale (redelivered after the player moved on: refused).",
    ),
    (
        "tessera_redirects_total",
        None,
        "Players redirected to another node.",
    ),
    (
        "tessera_logins_held_total",
        None,
        "Logins refused because the player is in the world on another node (elsewhere) or on its way there (moving).",
    ),
    (
        "tessera_logins_abandoned_total",
        None,
        "Logins whose client left before the node joined the player (skipped, or the avatar waits for a resume).",
    ),
    (
        "tessera_logins_rate_limited_total",
        None,
        "Logins refused with RateLimited by the login rate limit of their remote address ([net] logins_per_address_per_s, login_burst_per_address).",
    ),
    (
        "tessera_ghost_gaps_total",
        None,
        "Ghost updates from neighbouring nodes missed (pub/sub sequence gaps).",
    ),
    (
        "tessera_ghosts_dropped_total",
        None,
        "Ghost updates not published because the queue was full.",
    ),
    (
        "tessera_bus_backlog",
        None,
        "Handoffs waiting to go out on the bus.",
    ),
    (
        "tessera_bus_breaker_open",
        None,
        "1 while the bus's circuit breaker is open (Redis calls refused).",
    ),
    (
        "tessera_bus_pending",
        None,
        "Bus mail delivered to the region and not yet acknowledged (receiver lag).",
    ),
    (
        "tessera_bus_dead_letters",
        None,
        "Bus mail to the region given up on after too many deliveries.",
    ),
    (
        "tessera_player_saves_total",
        None,
        "Player saves, by result.",
    ),
    (
        "tessera_feed_events_total",
        None,
        "Live feed events: published on this node, received from other nodes, dropped (not sent to the cluster: its queue was full or Redis failed).",
    ),
    (
        "tessera_feed_subscribers",
        None,
        "WebSocket subscribers of this node's live feed.",
    ),
    (
        "tessera_feed_slow_subscribers_total",
        None,
        "Feed subscribers dropped for falling too far behind or taking nothing.",
    ),
    (
        "tessera_directory_updates_total",
        None,
        "Player directory updates (logins, heartbeats, departures, levels), by result: written, dropped (the queue was full: a session may be missing from a player's history until its next heartbeat), failed (refused by the store).",
    ),
    (
        "tessera_economy_transactions_total",
        None,
        "Economy transactions (kills, starter kits, purchases, trades), by result: applied, duplicate (a key applied before), refused (the economy's rules), failed (given up), dropped (the queue was full).",
    ),
    (
        "tessera_economy_retries_total",
        None,
        "Economy transaction attempts the store could not answer (unavailable, contended), retried with the same key.",
    ),
    (
        "tessera_leaderboard_update_failures_total",
        None,
        "Leaderboard updates after an applied economy transaction that failed (the boards lag until POST /v1/leaderboards/rebuild).",
    ),
    (
        "tessera_chat_messages_total",
        None,
        "Chat messages players here sent (and that passed the checks), by channel: say, region, global, whisper.",
    ),
    (
        "tessera_chat_events_total",
        None,
        "Chat by event: refused (chat and commands refused: rate limit, mute, blocked word, bad request), published and publish_failed (to the cluster's chat), received (from it), lost (other nodes' messages this node missed: gaps in their sequences), dropped (received, the driver had no room), recipient_dropped (a recipient's outbox was full).",
    ),
    (
        "tessera_snapshot_commits_total",
        None,
        "Region snapshot commits made durable.",
    ),
    (
        "tessera_snapshot_flush_seconds",
        Some(Unit::Seconds),
        "Duration of the last region snapshot commit.",
    ),
    (
        "tessera_snapshot_age_seconds",
        Some(Unit::Seconds),
        "Simulation time since the newest durable snapshot: what a crash would lose.",
    ),
    (
        "tessera_snapshot_outbox_bytes",
        None,
        "Snapshot bytes waiting for the store.",
    ),
    (
        "tessera_snapshot_captures_skipped_total",
        None,
        "Snapshot captures skipped while the encoder was behind.",
    ),
    (
        "tessera_writes_waiting",
        None,
        "1 while a writer waits for an unavailable store.",
    ),
    (
        "tessera_store_breaker_open",
        None,
        "1 while the store's circuit breaker is open.",
    ),
    (
        "tessera_dependency_up",
        None,
        "1 while the service answers its health probe.",
    ),
    (
        "tessera_balance_reloads_total",
        None,
        "balance.toml reloads, applied or refused.",
    ),
];
