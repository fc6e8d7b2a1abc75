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
    /// `[chat]`: chat reach, per-player request limits and the blocked-words list.
    pub chat: ChatConfig,
}

/// A token bucket: `per_s` sustained, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Refill, requests per second.
    pub per_s: u32,
    /// Size, requests at once.
    pub burst: u32,
}

/// `[chat]` of `tessera.toml`: how far `say` reaches, each player's request limits by
/// kind (PROTOCOL.md section 7), and the blocked-words list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatConfig {
    /// `say_radius_m`: a `say` reaches the players of the speaker's region this close.
    pub say_radius_m: u32,
    /// `chat_per_s`, `chat_burst`: chat messages per player.
    pub chat: RateLimit,
    /// `commands_per_s`, `commands_burst`: slash commands per player.
    pub commands: RateLimit,
    /// `economy_per_s`, `economy_burst`: economy requests (purchases, refunds, trades,
    /// economy reads) per player.
    pub economy: RateLimit,
    /// `blocked_words_file`: one word or phrase per line (`#` starts a comment); a chat
    /// message holding one is refused. `None` (`""`): no list.
    pub blocked_words_file: Option<std::path::PathBuf>,
}

impl ChatConfig {
    /// The defaults: `say` reaches 30 m; chat 5 at once then 1 a second, commands 5 then
    /// 2 a second, economy requests 10 then 5 a second; no blocked words.
    pub const DEFAULT: ChatConfig = ChatConfig {
        say_radius_m: 30,
        chat: RateLimit { per_s: 1, burst: 5 },
        commands: RateLimit { per_s: 2, burst: 5 },
        economy: RateLimit {
            per_s: 5,
            burst: 10,
        },
        blocked_words_file: None,
    };
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
    /// `[progression]`: levels and experience.
    pub progression: Progression,
    /// `[economy]`: inventories and the starter kit.
    pub economy: Economy,
    /// `[items.ID]`, sorted by id.
    pub items: Vec<ItemDef>,
    /// `[loot.ARCHETYPE]`, sorted by archetype name (so by archetype index); an archetype
    /// without one drops nothing.
    pub loot: Vec<LootTable>,
    /// `[shops.ID]`, sorted by id.
    pub shops: Vec<Shop>,
}

impl BalanceConfig {
    /// The index into [`BalanceConfig::items`] of the item `id`.
    pub fn item_index(&self, id: &str) -> Option<usize> {
        self.items.binary_search_by(|i| i.id.as_str().cmp(id)).ok()
    }

    /// The loot table of the archetype `archetype` (an index into
    /// [`BalanceConfig::archetypes`]), if it has one.
    pub fn loot_of(&self, archetype: usize) -> Option<&LootTable> {
        self.loot
            .binary_search_by_key(&archetype, |t| t.archetype)
            .ok()
            .map(|i| &self.loot[i])
    }

    /// The index into [`BalanceConfig::shops`] of the shop `id`.
    pub fn shop_index(&self, id: &str) -> Option<usize> {
        self.shops.binary_search_by(|s| s.id.as_str().cmp(id)).ok()
    }
}

/// `[progression]` of `balance.toml`: how players level up.
#[derive(Clone, Debug)]
pub struct Progression {
    /// `level_cap`: the highest level a player reaches, 1 to [`super::LEVEL_CAP_MAX`]. XP
    /// gained at the cap still counts (for leaderboards) but levels no more.
    pub level_cap: u32,
    /// `xp_to_next`: the XP needed to go from `level` to `level + 1`
    /// ([`super::XP_TO_NEXT_VARS`]); see [`Progression::xp_to_next`].
    pub xp_to_next: Formula,
    /// `kill_xp`: the XP a player gains for a kill ([`super::KILL_VARS`]); see
    /// [`Progression::kill_xp`].
    pub kill_xp: Formula,
}

impl Progression {
    /// The XP needed to go from `level` to `level + 1`: the formula's value rounded down,
    /// at least 1 (a formula giving less, or no finite number, would level a player
    /// without any XP) and at most [`super::XP_AMOUNT_MAX`].
    pub fn xp_to_next(&self, level: u32) -> u64 {
        whole(
            self.xp_to_next.eval(&[f64::from(level)]),
            super::XP_AMOUNT_MAX,
        )
        .max(1)
    }

    /// The XP a player of `level` gains for killing an NPC of `target_level`: the formula's
    /// value rounded down, 0 if it is negative or not finite, at most
    /// [`super::XP_AMOUNT_MAX`].
    pub fn kill_xp(&self, level: u32, target_level: u32) -> u64 {
        whole(
            self.kill_xp
                .eval(&[f64::from(level), f64::from(target_level)]),
            super::XP_AMOUNT_MAX,
        )
    }
}

/// A formula's value as a whole amount: rounded down, 0 when negative or not finite,
/// capped at `max`.
pub fn whole(value: f64, max: u64) -> u64 {
    if value.is_finite() && value >= 1.0 {
        // `as` saturates; the cap keeps the result exact.
        (value.floor() as u64).min(max)
    } else {
        0
    }
}

/// `[economy]` of `balance.toml`.
#[derive(Clone, Debug)]
pub struct Economy {
    /// `inventory_slots`: slots of each player's inventory, 1 to
    /// [`super::INVENTORY_SLOTS_MAX`]; a slot holds one item kind, up to its stack size.
    pub inventory_slots: u32,
    /// `starter_coins`: coins in a new player's starter kit, 0 to
    /// [`super::PRICE_MAX`].
    pub starter_coins: u32,
    /// `starter_items`: items in a new player's starter kit, each item at most once; the
    /// kit fits the inventory.
    pub starter_items: Vec<ItemStack>,
}

/// An amount of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemStack {
    /// Index into [`BalanceConfig::items`].
    pub item: usize,
    /// How many, at least 1.
    pub count: u32,
}

/// `[items.ID]`: something a player can own.
#[derive(Clone, Debug)]
pub struct ItemDef {
    /// The table key: 1 to 64 characters of `[A-Za-z0-9_-]`, never `coins`. Inventories,
    /// loot, shops and the ledger store it: renaming an item orphans what players hold.
    pub id: String,
    /// `name`: shown to players, 1 to 64 characters, no control characters.
    pub name: String,
    /// `stack_size`: most of it one inventory slot holds, 1 to [`super::STACK_SIZE_MAX`].
    pub stack_size: u32,
    /// `price`: coins a shop charges for one, 0 to [`super::PRICE_MAX`], unless the
    /// shop's entry sets its own percentage.
    pub price: u32,
}

/// `[loot.ARCHETYPE]`: what an NPC of one archetype drops when a player kills it.
#[derive(Clone, Debug)]
pub struct LootTable {
    /// Index into [`BalanceConfig::archetypes`].
    pub archetype: usize,
    /// `drops`, each rolled on its own, in order.
    pub drops: Vec<LootDrop>,
}

/// One line of a loot table.
#[derive(Clone, Debug)]
pub struct LootDrop {
    /// `item`: an item id, or `"coins"`.
    pub what: Loot,
    /// `chance`: the probability that it drops, 0 to 1.
    pub chance: f32,
    /// `amount`: how many ([`super::LOOT_VARS`]); see [`LootDrop::amount`].
    pub amount: Formula,
}

impl LootDrop {
    /// How many drop from an NPC of `target_level`: the formula's value rounded down, 0 if
    /// negative or not finite (nothing drops), at most [`super::LOOT_AMOUNT_MAX`].
    pub fn amount(&self, target_level: u32) -> u32 {
        let v = self.amount.eval(&[f64::from(target_level)]);
        // The cap is a u32: the conversion cannot fail.
        u32::try_from(whole(v, u64::from(super::LOOT_AMOUNT_MAX))).unwrap_or(0)
    }
}

/// What a loot line gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loot {
    /// Coins into the wallet.
    Coins,
    /// An item: index into [`BalanceConfig::items`].
    Item(usize),
}

/// `[shops.ID]`: a vendor selling items for coins.
#[derive(Clone, Debug)]
pub struct Shop {
    /// The table key: 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub id: String,
    /// `name`: shown to players, 1 to 64 characters, no control characters.
    pub name: String,
    /// `goods`: what it sells, each item at most once.
    pub goods: Vec<ShopGood>,
}

/// One item a shop sells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShopGood {
    /// Index into [`BalanceConfig::items`].
    pub item: usize,
    /// Coins for one: the item's `price` times `price_percent` / 100, rounded down.
    pub price: u64,
    /// `price_percent`: 1 to 1000, default 100.
    pub price_percent: u32,
    /// `stock_max`: units in stock when the shop opens, and the most restocking refills
    /// to; 0 to [`super::STOCK_MAX`].
    pub stock_max: u32,
    /// `restock_per_min`: units added back per minute up to `stock_max`, 0 to
    /// [`super::STOCK_MAX`].
    pub restock_per_min: u32,
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
