//! The frozen, validated configuration the rest of Tessera reads.
//!
//! These types are produced only by the loader (see [`super::load_dir`]): every value in
//! them has passed validation, so consumers never re-check ranges. They are immutable once
//! built; a reload builds a new [`Config`] and swaps it in at a tick boundary.

use crate::ids::RegionId;
use crate::math::{Aabb, Vec2};
use std::net::SocketAddr;
use std::path::PathBuf;

use super::formula::Formula;

/// Everything a node needs: `tessera.toml`, `world.toml` and `balance.toml`.
#[derive(Clone, Debug)]
pub struct Config {
    /// `tessera.toml`: the node (operator-owned).
    pub node: NodeConfig,
    /// `world.toml`: the world's shape (level-design-owned).
    pub world: WorldConfig,
    /// `balance.toml`: numbers and formulas (designer-owned, hot-reloadable later).
    pub balance: BalanceConfig,
}

/// Whether the node runs with generated dev secrets or insists on explicit ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeMode {
    /// Generates a dev TLS certificate and JWT secret in the data dir and says so.
    Dev,
    /// Refuses to start without explicit secrets.
    Production,
}

/// `tessera.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// `[node] name`: shown in logs, metrics and the admin API. 1 to 64 chars of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// `[node] mode`: `"dev"` or `"production"`.
    pub mode: NodeMode,
    /// `[node] data_dir`: embedded store, dev certificates and secrets live here. A relative
    /// path is relative to the working directory. Non-empty, at most 4096 bytes.
    pub data_dir: PathBuf,
    /// `[net] quic_listen`: UDP address of the QUIC endpoint, written `"127.0.0.1:4433"` or
    /// `"[::1]:4433"`.
    pub quic_listen: SocketAddr,
    /// `[net] admin_listen`: TCP address of the admin HTTP API.
    pub admin_listen: SocketAddr,
    /// `[net] logins_per_address_per_s`, `login_burst_per_address`, `login_limit_loopback`:
    /// the login rate limit per remote address.
    pub login_limit: LoginLimitConfig,
    /// `[net] state_kbit_per_s`, `state_staleness_ticks_max`: what each client's states
    /// may cost, and how stale a visible entity may get.
    pub state_budget: StateBudgetConfig,
    /// `[sim] threads`: rayon threads stepping regions; 0 means one per core. 0 to 256.
    pub sim_threads: u32,
    /// `[auth]`: how login tokens and session tickets are checked.
    pub auth: AuthConfig,
    /// `[tls]`: the QUIC endpoint's certificate.
    pub tls: TlsConfig,
    /// `[services]`: the cluster's shared MongoDB and Redis, or none (embedded default).
    pub services: ServicesConfig,
    /// `[persistence] snapshot_interval_s`: how often each region's changed cells are
    /// committed to the snapshot store; what a crash can lose at most. 1 to 3600 s.
    pub snapshot_interval: std::time::Duration,
    /// `[cluster]`: which regions this node holds, and how other nodes reach it.
    pub cluster: ClusterConfig,
    /// `[admin]`: who may use the admin HTTP API.
    pub admin: AdminConfig,
}

/// The login rate limit per remote address (`[net]` of `tessera.toml`; PROTOCOL.md
/// section 7): a token bucket per address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimitConfig {
    /// `[net] logins_per_address_per_s`: the bucket's refill, logins per second. 1 to 10,000.
    pub per_s: u32,
    /// `[net] login_burst_per_address`: the bucket's size, logins at once. 1 to 100,000.
    pub burst: u32,
    /// `[net] login_limit_loopback`: whether loopback addresses are limited too.
    pub loopback: bool,
}

impl LoginLimitConfig {
    /// The defaults: 20 logins at once, then 5 per second, loopback exempt. An honest
    /// client logs in once per session and again after a dropped connection; 20 covers a
    /// household or an office behind one address reconnecting together, 5 per second lets
    /// a larger group through within seconds (each refusal says when to retry), while a
    /// script trying tokens gets 5 checks a second per address. Loopback is exempt so that
    /// `tessera bots` (1,000 logins in under a second from 127.0.0.1), the tests and a
    /// proxy on the same host are not limited.
    pub const DEFAULT: LoginLimitConfig = LoginLimitConfig {
        per_s: 5,
        burst: 20,
        loopback: false,
    };
}

/// Each client's state budget (`[net]` of `tessera.toml`; PROTOCOL.md section 5, "Budget
/// and priority"): the bytes of states a client is sent per second, filled by priority, and
/// the staleness bound that overrides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateBudgetConfig {
    /// `[net] state_kbit_per_s`: state bytes per client per second, in kilobits (1,000
    /// bits). 8 to 100,000.
    pub kbit_per_s: u32,
    /// `[net] state_staleness_ticks_max`: a visible entity that changed, or entered the
    /// view, is sent within this many ticks even over the budget. 1 to 1,000.
    pub staleness_ticks_max: u32,
}

impl StateBudgetConfig {
    /// The defaults: 128 kbit/s (800 bytes a tick at 20 Hz: a crowd of 256 moving
    /// entities fits it), and at most 20 ticks (1 s at 20 Hz) stale.
    pub const DEFAULT: StateBudgetConfig = StateBudgetConfig {
        kbit_per_s: 128,
        staleness_ticks_max: 20,
    };

    /// The budget in bytes per tick at `tick_hz`.
    pub fn bytes_per_tick(&self, tick_hz: u32) -> u32 {
        (u64::from(self.kbit_per_s) * 1_000 / 8 / u64::from(tick_hz.max(1))) as u32
    }
}

/// `[admin]` of `tessera.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// `[admin] keys_file`: the API keys of the admin HTTP API (their SHA-256, with a name
    /// and a role each), or `None` (dev mode only): a dev admin key generated into
    /// `data_dir`.
    pub keys_file: Option<PathBuf>,
}

/// `[services]` of `tessera.toml`. An empty URI means the embedded default: the redb
/// store in `data_dir` instead of MongoDB. (Redis joins it with the cross-node bus.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicesConfig {
    /// `[services] mongodb_uri`: `mongodb://...` (at most 4096 bytes), or `None`.
    pub mongodb_uri: Option<String>,
    /// `[services] mongodb_database`: the database holding Tessera's collections.
    pub mongodb_database: String,
    /// `[services] redis_url`: `redis://...` or `rediss://...` (at most 4096 bytes), or
    /// `None`: the in-process bus and leases (one node holds every region).
    pub redis_url: Option<String>,
}

/// `[cluster]` of `tessera.toml`: this node's part of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `[cluster] regions`: the regions this node takes at start (their leases); empty
    /// means every region of the world without `[services] redis_url`, and none with it
    /// (an orchestrator assigns them).
    pub regions: Vec<crate::ids::RegionId>,
    /// `[cluster] advertise_addr`: `host:port` other nodes redirect clients to; `None`
    /// means the QUIC endpoint's bound address.
    pub advertise_addr: Option<String>,
}

/// `[auth]` of `tessera.toml`. In production mode both files are required (the loader
/// refuses empty paths); in dev mode an empty path means "generate into `data_dir`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// `[auth] issuer`: the `iss` every login token must carry. 1 to 256 bytes.
    pub issuer: String,
    /// `[auth] audience`: the `aud` every login token must carry. 1 to 256 bytes.
    pub audience: String,
    /// `[auth] algorithm`: how login tokens are signed.
    pub algorithm: TokenAlgorithm,
    /// `[auth] key_file`: the HS256 secret (raw bytes, at least 32) or the public key (PEM)
    /// that verifies login tokens. `None` (empty in the file): a generated dev secret.
    pub key_file: Option<PathBuf>,
    /// `[auth] ticket_secret_file`: the secret (raw bytes, at least 32) that signs resume
    /// and redirect tickets; every node of a cluster must share it. `None`: generated.
    pub ticket_secret_file: Option<PathBuf>,
}

/// The signature algorithm of login tokens: one, pinned (a token naming another is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// HMAC-SHA256 with a secret shared with the login service.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256; the node holds the public key.
    Rs256,
    /// ECDSA P-256 with SHA-256; the node holds the public key.
    Es256,
    /// Ed25519; the node holds the public key.
    EdDsa,
}

/// `[tls]` of `tessera.toml`. Both or neither: `None` means a generated dev certificate
/// (dev mode only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// `[tls] cert_file`: the certificate chain, PEM, leaf first.
    pub cert_file: Option<PathBuf>,
    /// `[tls] key_file`: the leaf's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// `world.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct WorldConfig {
    /// `[world] name`: 1 to 64 characters, no control characters.
    pub name: String,
    /// `[world] size_m = { x, y }`: the world spans `[0, x) x [0, y)` metres. Each 1 to 1_000_000.
    pub size_m: Vec2,
    /// `[world] tick_hz`: simulation rate, 1 to 120.
    pub tick_hz: u32,
    /// `[grid] cell_size_m`: spatial grid cell edge, 1 to 1024.
    pub cell_size_m: f32,
    /// `[interest]`.
    pub interest: InterestConfig,
    /// `[limits]`.
    pub limits: WorldLimits,
    /// `[regions]`: the regions, sorted by id; 1 to [`super::REGIONS_MAX`]. They tile the
    /// world: inside it, pairwise disjoint. A `layout = "grid"` covers it exactly; a
    /// `layout = "list"` may leave gaps, which no region simulates. Each region needs at
    /// most [`super::GRID_CELLS_MAX`] grid cells.
    pub regions: Vec<RegionDef>,
}

impl WorldConfig {
    /// The region whose bounds hold `position` (regions do not overlap; the loader checks).
    pub fn region_at(&self, position: Vec2) -> Option<&RegionDef> {
        self.regions.iter().find(|r| r.bounds.contains(position))
    }
}

/// `[interest]` of `world.toml`: what each observer sees. Every key is required.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterestConfig {
    /// `enter_radius_m`: an entity becomes visible when it comes this close. 1 to 10_000.
    pub enter_radius_m: f32,
    /// `leave_radius_m`: a visible entity stays visible until it is farther than this.
    /// Must be >= `enter_radius_m` (the hysteresis band stops flicker at the edge).
    pub leave_radius_m: f32,
    /// `visible_entities_max`: cap on one observer's visible set; when more qualify, the
    /// nearest are kept. 1 to 65_536.
    pub visible_entities_max: u32,
    /// `wake_radius_m`: NPCs farther than this from every player are dormant (no AI, no
    /// movement). 0 to 10_000.
    pub wake_radius_m: f32,
}

/// `[limits]` of `world.toml`: per-region bounds on work and memory.
///
/// Every key is optional; an absent key takes its value from [`WorldLimits::DEFAULT`]
/// (200_000 / 2_000 / 8_192 / 1_024, in field order).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorldLimits {
    /// `entities_per_region_max`: spawns and handoffs beyond this are refused. 1 to 1_000_000.
    pub entities_per_region_max: u32,
    /// `players_per_region_max`: joins beyond this are refused. 1 to 100_000.
    pub players_per_region_max: u32,
    /// `inputs_per_tick_max`: inputs beyond this in one tick are dropped and counted. 1 to 1_000_000.
    pub inputs_per_tick_max: u32,
    /// `handoffs_per_tick_max`: incoming handoffs applied per tick; the rest wait. 1 to 100_000.
    pub handoffs_per_tick_max: u32,
}

/// One region: its id, area and NPC population.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionDef {
    /// Unique id, 1 to [`RegionId::MAX`] (8,388,607).
    pub id: RegionId,
    /// The area it simulates; inside the world, disjoint from every other region.
    pub bounds: Aabb,
    /// Where players join and respawn; inside `bounds`. A grid layout uses the centre; a
    /// listed region's `spawn_point = { x, y }`, by default the centre.
    pub spawn_point: Vec2,
    /// Index into [`BalanceConfig::spawn_tables`] of this region's NPC population.
    pub spawn_table: usize,
}

/// `balance.toml`.
#[derive(Clone, Debug)]
pub struct BalanceConfig {
    /// `[movement]`.
    pub movement: MovementRules,
    /// `[player] archetype`: index into `archetypes` of the player avatar's archetype.
    pub player_archetype: usize,
    /// `[archetypes.NAME]`, sorted by name.
    pub archetypes: Vec<Archetype>,
    /// `[formulas]`.
    pub formulas: Formulas,
    /// `[spawn_tables.NAME]`, sorted by name.
    pub spawn_tables: Vec<SpawnTable>,
}

/// `[movement]` of `balance.toml`.
#[derive(Clone, Copy, Debug)]
pub struct MovementRules {
    /// `speed_tolerance`: a client move may exceed `speed_mps * dt` by this fraction before
    /// it is clamped (absorbs float noise and jitter). 0 to 0.5.
    pub speed_tolerance: f32,
}

/// A kind of creature: players' avatars and NPCs alike.
#[derive(Clone, Debug)]
pub struct Archetype {
    /// The table key, `[archetypes.NAME]`: 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// `max_health`: 1 to 1_000_000.
    pub max_health: f32,
    /// `speed_mps`: 0 to 100.
    pub speed_mps: f32,
    /// `attack`: the formula's `atk`. 0 to 1_000_000.
    pub attack: f32,
    /// `defense`: the formula's `def`. 0 to 1_000_000.
    pub defense: f32,
    /// `level`: 1 to 1000.
    pub level: u32,
    /// `attack_range_m`: 0 to 100.
    pub attack_range_m: f32,
    /// `attack_cooldown_ms`: 0 to 600_000.
    pub attack_cooldown_ms: u32,
    /// `regen_per_s`: health per second while alive. 0 to 1_000_000.
    pub regen_per_s: f32,
    /// `hostile`: NPCs of a hostile archetype aggro on players.
    pub hostile: bool,
    /// `aggro_radius_m`: 0 to 1000.
    pub aggro_radius_m: f32,
    /// `leash_radius_m`: a chasing NPC farther than this from home gives up. >= `aggro_radius_m`, <= 10_000.
    pub leash_radius_m: f32,
    /// `wander_radius_m`: idle NPCs wander within this distance of home. 0 to 10_000.
    pub wander_radius_m: f32,
    /// `respawn_delay_ms`: 0 to 3_600_000.
    pub respawn_delay_ms: u32,
}

/// `[formulas]` of `balance.toml`, each compiled once at load.
#[derive(Clone, Debug)]
pub struct Formulas {
    /// `damage`: variables `atk`, `def`, `level`, `target_level`, passed to
    /// [`Formula::eval`] in that order (see [`super::DAMAGE_VARS`]). Result clamped at 0 by
    /// the simulation; a non-finite result counts as 0.
    pub damage: Formula,
}

/// `[spawn_tables.NAME]`: the NPC population a region keeps.
#[derive(Clone, Debug)]
pub struct SpawnTable {
    /// The table key, `[spawn_tables.NAME]`: 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub name: String,
    /// `entries = [{ archetype = "wolf", count = 40 }, ...]`: each archetype at most once,
    /// at most [`super::SPAWN_ENTRIES_MAX`] entries. The counts' sum must not exceed
    /// `entities_per_region_max` (world.toml `[limits]`) when a region uses the table.
    pub entries: Vec<SpawnEntry>,
}

/// One line of a spawn table.
#[derive(Clone, Copy, Debug)]
pub struct SpawnEntry {
    /// Index into [`BalanceConfig::archetypes`].
    pub archetype: usize,
    /// How many the region keeps alive. 0 to 1_000_000.
    pub count: u32,
}
