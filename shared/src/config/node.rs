//! `tessera.toml` and its environment overrides.

use std::net::SocketAddr;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeTable;

use super::reader::{At, EnvOverride, SourceFile, Table};
use super::schema::{
    AdminConfig, AuthConfig, ChatConfig, ClusterConfig, LoginLimitConfig, NodeConfig, NodeMode,
    RateLimit, ServicesConfig, StateBudgetConfig, TlsConfig, TokenAlgorithm,
};
use super::spec::{Section, Spec};
use super::suggest;
use super::{NAME_CHARS_MAX, is_node_name};
use crate::ids::RegionId;

/// Environment variables starting with this override keys of `tessera.toml`.
pub(super) const ENV_PREFIX: &str = "TESSERA__";

/// `tessera.toml`: its sections, each of which the environment can override key by key.
pub(super) const FILE: Section = Section::of(
    "The node: its name and mode, listen addresses, threads, credentials, services and \
     cluster membership. Owned by whoever runs the server. Any key can be overridden from \
     the environment as TESSERA__SECTION__KEY, e.g. TESSERA__NET__QUIC_LISTEN=0.0.0.0:4433 \
     (this schema checks the file alone: a key set only from the environment shows as \
     missing here).",
    &[
        Spec::table("node", &NODE),
        Spec::table("net", &NET),
        Spec::table("sim", &SIM),
        Spec::table("auth", &AUTH),
        Spec::table("tls", &TLS),
        Spec::table("services", &SERVICES),
        Spec::table("persistence", &PERSISTENCE),
        Spec::table("cluster", &CLUSTER),
        Spec::table("admin", &ADMIN),
        Spec::table("chat", &CHAT),
    ],
);

const CHAT: Section = Section::of(
    "Chat and players' requests: how far `say` reaches, each player's rate limit per kind \
     of request (a request over it is refused with RateLimited and the time to retry; \
     others' requests are unaffected), and the blocked-words list.",
    &[
        Spec::int_or(
            "say_radius_m",
            1,
            1_000,
            ChatConfig::DEFAULT.say_radius_m,
            "A `say` message reaches the players of the speaker's region within this many metres.",
        ),
        Spec::int_or(
            "chat_per_s",
            1,
            1_000,
            ChatConfig::DEFAULT.chat.per_s,
            "Chat messages a player may send per second, sustained.",
        ),
        Spec::int_or(
            "chat_burst",
            1,
            1_000,
            ChatConfig::DEFAULT.chat.burst,
            "Chat messages a player may send at once before chat_per_s applies.",
        ),
        Spec::int_or(
            "commands_per_s",
            1,
            1_000,
            ChatConfig::DEFAULT.commands.per_s,
            "Slash commands a player may send per second, sustained.",
        ),
        Spec::int_or(
            "commands_burst",
            1,
            1_000,
            ChatConfig::DEFAULT.commands.burst,
            "Slash commands a player may send at once before commands_per_s applies.",
        ),
        Spec::int_or(
            "economy_per_s",
            1,
            1_000,
            ChatConfig::DEFAULT.economy.per_s,
            "Economy requests (buy, refund, trade offers, acceptances, withdrawals, economy \
             reads) a player may send per second, sustained.",
        ),
        Spec::int_or(
            "economy_burst",
            1,
            1_000,
            ChatConfig::DEFAULT.economy.burst,
            "Economy requests a player may send at once before economy_per_s applies.",
        ),
        Spec::text_opt(
            "blocked_words_file",
            "a file path, or \"\" for none",
            "A text file of blocked words or phrases, one per line (`#` starts a comment, \
             case is ignored, at most 10,000 entries of at most 64 bytes); a chat message \
             holding one as a whole word is refused with Moderated. Relative to the server's \
             working directory. Absent or \"\": none.",
        ),
    ],
);

/// What a file path key must be.
const PATH_EXPECTED: &str = "a file path, or \"\" for a generated dev one";

const NODE: Section = Section::of(
    "The node's identity and where it keeps its data.",
    &[
        Spec::text(
            "name",
            "a node name such as \"node-1\"",
            "Shown in logs, metrics and the admin API. 1 to 64 characters of A-Z a-z 0-9 _ . -",
        ),
        Spec::choice(
            "mode",
            &["dev", "production"],
            "\"dev\" generates a dev TLS certificate and JWT secret in data_dir and says so; \
             \"production\" refuses to start without explicit secrets.",
        ),
        Spec::text(
            "data_dir",
            "a directory path such as \"./data\"",
            "Embedded snapshot store, dev certificates and secrets live here; relative to the \
             server's working directory. At most 4096 bytes.",
        ),
    ],
);

const NET: Section = Section::of(
    "Listen addresses, the login rate limit per remote address, and each client's state budget.",
    &[
        Spec::text(
            "quic_listen",
            "an IP address and port such as \"127.0.0.1:4433\" or \"[::1]:4433\"",
            "UDP address of the QUIC endpoint game clients connect to, e.g. \"0.0.0.0:4433\" \
             (all interfaces) or \"[::1]:4433\".",
        ),
        Spec::text(
            "admin_listen",
            "an IP address and port such as \"127.0.0.1:8080\" or \"[::1]:4433\"",
            "TCP address of the admin HTTP API (metrics, region control). Keep it private.",
        ),
        Spec::int_or(
            "logins_per_address_per_s",
            1,
            10_000,
            LoginLimitConfig::DEFAULT.per_s,
            "Logins (Hello messages) a remote address may make per second, sustained: a token \
             bucket per address (an IPv6 address counts by its /64), refilled at this rate. A \
             login over it is refused with RateLimited and the time to retry.",
        ),
        Spec::int_or(
            "login_burst_per_address",
            1,
            100_000,
            LoginLimitConfig::DEFAULT.burst,
            "Logins a remote address may make at once before logins_per_address_per_s applies: \
             the bucket's size. Raise both where many players share one address (a carrier \
             NAT, a proxy in front of the node).",
        ),
        Spec::flag_or(
            "login_limit_loopback",
            LoginLimitConfig::DEFAULT.loopback,
            "true: loopback addresses (127.0.0.0/8, ::1) are limited too. false: they are \
             exempt, for local bots, tests and a proxy on the same host.",
        ),
        Spec::int_or(
            "state_kbit_per_s",
            8,
            100_000,
            StateBudgetConfig::DEFAULT.kbit_per_s,
            "State bytes each client may be sent per second, in kilobits: every tick the \
             node fills the client's share by priority (near, moving, fighting entities \
             first; an entity waiting gains priority each tick) and unchanged entities cost \
             nothing. 128 is 800 bytes a tick at 20 Hz.",
        ),
        Spec::int_or(
            "state_staleness_ticks_max",
            1,
            1_000,
            StateBudgetConfig::DEFAULT.staleness_ticks_max,
            "A visible entity that changed, or came into view, is sent within this many \
             ticks even if that goes over state_kbit_per_s (later ticks then send less).",
        ),
    ],
);

const SIM: Section = Section::of(
    "The simulation's threads.",
    &[Spec::int(
        "threads",
        0,
        256,
        "Threads stepping regions in parallel. 0 means one per CPU core.",
    )],
);

const AUTH: Section = Section::of(
    "How login tokens (JWTs from the studio's login service) and session tickets are checked.",
    &[
        Spec::text(
            "issuer",
            "the iss of login tokens, such as \"tessera-dev\"",
            "The `iss` every login token must carry. 1 to 256 bytes.",
        ),
        Spec::text(
            "audience",
            "the aud of login tokens, such as \"tessera\"",
            "The `aud` every login token must carry. 1 to 256 bytes.",
        ),
        Spec::choice(
            "algorithm",
            &["HS256", "RS256", "ES256", "EdDSA"],
            "The one algorithm login tokens are signed with: HS256 (a shared secret), or RS256, \
             ES256, EdDSA (the node holds the public key).",
        ),
        Spec::text(
            "key_file",
            PATH_EXPECTED,
            "The key that verifies login tokens: for HS256 a file of at least 32 raw secret \
             bytes, otherwise a PEM public key. \"\" generates a dev secret into data_dir (dev \
             mode only).",
        ),
        Spec::text(
            "ticket_secret_file",
            PATH_EXPECTED,
            "The secret (at least 32 raw bytes) that signs resume and redirect tickets, shared \
             by every node of a cluster. \"\" generates a dev secret into data_dir (dev mode only).",
        ),
    ],
);

const TLS: Section = Section::of(
    "The QUIC endpoint's certificate. \"\" for both generates a self-signed dev certificate \
     into data_dir that clients must pin (dev mode only).",
    &[
        Spec::text("cert_file", PATH_EXPECTED, "The certificate chain, PEM."),
        Spec::text("key_file", PATH_EXPECTED, "The private key, PEM."),
    ],
);

const SERVICES: Section = Section::of(
    "The cluster's shared services. \"\" means none: the embedded default (a snapshot and \
     player store in data_dir, an in-process bus, every region held by this node).",
    &[
        Spec::text(
            "mongodb_uri",
            "a URI starting with mongodb://, or \"\" for none",
            "MongoDB, with the credentials inside; set it per deployment, e.g. \
             TESSERA__SERVICES__MONGODB_URI. At most 4096 bytes.",
        ),
        Spec::text(
            "mongodb_database",
            "a database name such as \"tessera\"",
            "The database holding Tessera's collections. 1 to 63 characters of A-Z a-z 0-9 _ -",
        ),
        Spec::text(
            "redis_url",
            "a URI starting with redis:// or rediss://, or \"\" for none",
            "Redis: the cross-node event bus and the region leases, one for the whole cluster. \
             At most 4096 bytes.",
        ),
    ],
);

const PERSISTENCE: Section = Section::of(
    "The snapshot store.",
    &[Spec::int(
        "snapshot_interval_s",
        1,
        3_600,
        "How often each region's changed state is committed (s): at most this much \
         simulation is lost in a crash.",
    )],
);

const CLUSTER: Section = Section::of(
    "Which regions this node takes, and how other nodes reach it.",
    &[
        Spec::ids(
            "regions",
            1,
            RegionId::MAX,
            "an array of region ids such as [1, 2], or [] for every region",
            "The regions this node takes at start, by id, e.g. [1, 2]. [] means every region \
             for a node on its own (no redis_url), none for a node of a cluster (an \
             orchestrator assigns them through the admin API).",
        ),
        Spec::text(
            "advertise_addr",
            "a host:port such as \"10.0.0.5:4433\", or \"\"",
            "host:port that other nodes redirect clients to. \"\" means the QUIC listen address.",
        ),
    ],
);

const ADMIN: Section = Section::of(
    "Who may use the admin HTTP API.",
    &[Spec::text(
        "keys_file",
        PATH_EXPECTED,
        "A TOML file of [[keys]] entries (name, role, sha256 of the key); `tessera admin-key` \
         makes them. \"\" generates a dev admin key into data_dir (dev mode only).",
    )],
);

/// Longest accepted `[auth] issuer` and `audience`, in bytes.
const AUTH_NAME_BYTES_MAX: usize = 256;

/// Longest accepted `data_dir`, in bytes.
const DATA_DIR_BYTES_MAX: usize = 4096;

/// Turns `TESSERA__SECTION__KEY=value` variables (already filtered by prefix and sorted)
/// into overrides, reporting malformed names, unknown sections and duplicates.
pub(super) fn env_overrides<'a>(
    file: &SourceFile<'_>,
    env: &'a [(String, String)],
) -> Vec<EnvOverride<'a>> {
    let mut overrides: Vec<EnvOverride<'a>> = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<&str> = rest.split("__").collect();
        let [section, key] = parts.as_slice() else {
            file.error(
                At::Env(var),
                "expected a name of the form TESSERA__SECTION__KEY, e.g. TESSERA__NET__QUIC_LISTEN",
            );
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let sections = || FILE.keys.iter().map(|s| s.key);
        if !sections().any(|s| s == section) {
            let suggestion = suggest::closest(&section, sections())
                .map(|s| {
                    let rest = var
                        .get(ENV_PREFIX.len() + section.len()..)
                        .unwrap_or_default();
                    format!(
                        "; did you mean {ENV_PREFIX}{}{rest}?",
                        s.to_ascii_uppercase()
                    )
                })
                .unwrap_or_default();
            file.error(
                At::Env(var),
                format!(
                    "unknown section {section:?} of tessera.toml; allowed: {}{suggestion}",
                    sections().collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        }
        if let Some(first) = overrides
            .iter()
            .find(|o| o.section == section && o.key == key)
        {
            file.error(
                At::Env(var),
                format!("[{section}] {key} is already set by {}", first.var),
            );
            continue;
        }
        overrides.push(EnvOverride::new(var, section, key, raw));
    }
    overrides
}

/// Reads `tessera.toml` with the environment overrides applied. Not called when the file
/// did not parse: the overrides are then checked for their form only.
pub(super) fn read(
    file: &SourceFile<'_>,
    doc: &Spanned<DeTable<'_>>,
    overrides: &[EnvOverride<'_>],
) -> Option<NodeConfig> {
    let env_for = |section: &str| -> Vec<&EnvOverride<'_>> {
        overrides.iter().filter(|o| o.section == section).collect()
    };
    let mut root = Table::root(file, &FILE, doc);

    let node = root.table("node").map(|t| t.with_env(env_for("node")));
    let (name, mode, data_dir) = match node {
        Some(mut t) => {
            let name = t
                .text("name")
                .and_then(|(name, at)| {
                    if is_node_name(name) {
                        Some(name.to_owned())
                    } else {
                        file.error(
                            at,
                            format!(
                                "name must be 1 to {NAME_CHARS_MAX} characters of A-Z a-z 0-9 _ . -, got {name:?}"
                            ),
                        );
                        None
                    }
                });
            let mode = t.choice("mode").and_then(|(mode, _)| match mode {
                "dev" => Some(NodeMode::Dev),
                "production" => Some(NodeMode::Production),
                _ => None,
            });
            let data_dir = t
                .text("data_dir")
                .and_then(|(dir, at)| {
                    if dir.is_empty() || dir.len() > DATA_DIR_BYTES_MAX || dir.contains('\0') {
                        file.error(
                            at,
                            format!(
                                "data_dir must be a non-empty path of at most {DATA_DIR_BYTES_MAX} bytes without NUL"
                            ),
                        );
                        None
                    } else {
                        Some(PathBuf::from(dir))
                    }
                });
            t.finish();
            (name, mode, data_dir)
        }
        None => (None, None, None),
    };

    let net = root.table("net").map(|t| t.with_env(env_for("net")));
    let (quic_listen, admin_listen, login_limit, state_budget) = match net {
        Some(mut t) => {
            let quic = socket_addr(&mut t, "quic_listen");
            let admin = socket_addr(&mut t, "admin_listen");
            let per_s = t.int("logins_per_address_per_s");
            let burst = t.int("login_burst_per_address");
            let loopback = t.flag("login_limit_loopback");
            let kbit_per_s = t.int("state_kbit_per_s");
            let staleness_ticks_max = t.int("state_staleness_ticks_max");
            t.finish();
            let login_limit = match (per_s, burst, loopback) {
                (Some(per_s), Some(burst), Some(loopback)) => Some(LoginLimitConfig {
                    per_s,
                    burst,
                    loopback,
                }),
                _ => None,
            };
            let state_budget = match (kbit_per_s, staleness_ticks_max) {
                (Some(kbit_per_s), Some(staleness_ticks_max)) => Some(StateBudgetConfig {
                    kbit_per_s,
                    staleness_ticks_max,
                }),
                _ => None,
            };
            (quic, admin, login_limit, state_budget)
        }
        None => (None, None, None, None),
    };

    let sim = root.table("sim").map(|t| t.with_env(env_for("sim")));
    let sim_threads = match sim {
        Some(mut t) => {
            let threads = t.int("threads");
            t.finish();
            threads
        }
        None => None,
    };

    let auth = root.table("auth").map(|t| t.with_env(env_for("auth")));
    let auth = match auth {
        Some(mut t) => {
            let mut name = |key: &'static str| {
                t.text(key).and_then(|(text, at)| {
                    if text.is_empty() || text.len() > AUTH_NAME_BYTES_MAX {
                        file.error(
                            at,
                            format!(
                                "{key} must be 1 to {AUTH_NAME_BYTES_MAX} bytes, got {} bytes",
                                text.len()
                            ),
                        );
                        None
                    } else {
                        Some(text.to_owned())
                    }
                })
            };
            let issuer = name("issuer");
            let audience = name("audience");
            let algorithm = t.choice("algorithm").and_then(|(text, _)| match text {
                "HS256" => Some(TokenAlgorithm::Hs256),
                "RS256" => Some(TokenAlgorithm::Rs256),
                "ES256" => Some(TokenAlgorithm::Es256),
                "EdDSA" => Some(TokenAlgorithm::EdDsa),
                _ => None,
            });
            let key_file = optional_path(&mut t, "key_file", mode);
            let ticket_secret_file = optional_path(&mut t, "ticket_secret_file", mode);
            t.finish();
            // Every key is checked (and reported) before any missing one ends the section.
            (|| {
                Some(AuthConfig {
                    issuer: issuer?,
                    audience: audience?,
                    algorithm: algorithm?,
                    key_file: key_file?,
                    ticket_secret_file: ticket_secret_file?,
                })
            })()
        }
        None => None,
    };

    let tls = root.table("tls").map(|t| t.with_env(env_for("tls")));
    let tls = match tls {
        Some(mut t) => {
            let cert_file = optional_path(&mut t, "cert_file", mode);
            let key_file = optional_path(&mut t, "key_file", mode);
            t.finish();
            (|| {
                Some(TlsConfig {
                    cert_file: cert_file?,
                    key_file: key_file?,
                })
            })()
        }
        None => None,
    };
    let services = root
        .table("services")
        .map(|t| t.with_env(env_for("services")));
    let services = match services {
        Some(mut t) => {
            let mongodb_uri = service_uri(&mut t, "mongodb_uri", &["mongodb://"]);
            let mongodb_database = t
                .text("mongodb_database")
                .and_then(|(name, at)| {
                    let valid = !name.is_empty()
                        && name.len() <= 63
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if valid {
                        Some(name.to_owned())
                    } else {
                        file.error(
                            at,
                            format!(
                                "mongodb_database must be 1 to 63 characters of A-Z a-z 0-9 _ -, got {name:?}"
                            ),
                        );
                        None
                    }
                });
            let redis_url = service_uri(&mut t, "redis_url", &["redis://", "rediss://"]);
            t.finish();
            (|| {
                Some(ServicesConfig {
                    mongodb_uri: mongodb_uri?,
                    mongodb_database: mongodb_database?,
                    redis_url: redis_url?,
                })
            })()
        }
        None => None,
    };
    let persistence = root
        .table("persistence")
        .map(|t| t.with_env(env_for("persistence")));
    let snapshot_interval = match persistence {
        Some(mut t) => {
            let seconds = t.int("snapshot_interval_s");
            t.finish();
            seconds.map(|s| std::time::Duration::from_secs(u64::from(s)))
        }
        None => None,
    };
    let cluster = root
        .table("cluster")
        .map(|t| t.with_env(env_for("cluster")));
    let cluster = match cluster {
        Some(mut t) => {
            let regions = region_list(&mut t, file);
            let advertise = t
                .text("advertise_addr")
                .and_then(|(text, at)| {
                    if text.is_empty() {
                        Some(None)
                    } else if text.len() <= ADVERTISE_BYTES_MAX
                        && text.rsplit_once(':').is_some_and(|(host, port)| {
                            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                        })
                    {
                        Some(Some(text.to_owned()))
                    } else {
                        file.error(
                            at,
                            format!(
                                "advertise_addr must be host:port (at most {ADVERTISE_BYTES_MAX} bytes), or \"\" for the QUIC listen address, got {text:?}"
                            ),
                        );
                        None
                    }
                });
            t.finish();
            (|| {
                Some(ClusterConfig {
                    regions: regions?,
                    advertise_addr: advertise?,
                })
            })()
        }
        None => None,
    };
    let admin = root.table("admin").map(|t| t.with_env(env_for("admin")));
    let admin = match admin {
        Some(mut t) => {
            let keys_file = optional_path(&mut t, "keys_file", mode);
            t.finish();
            keys_file.map(|keys_file| AdminConfig { keys_file })
        }
        None => None,
    };
    let chat = root.table("chat").map(|t| t.with_env(env_for("chat")));
    let chat = match chat {
        Some(mut t) => {
            let say_radius_m = t.int("say_radius_m");
            let mut limit = |per_s: &'static str, burst: &'static str| {
                Some(RateLimit {
                    per_s: t.int(per_s)?,
                    burst: t.int(burst)?,
                })
            };
            let limits = (
                limit("chat_per_s", "chat_burst"),
                limit("commands_per_s", "commands_burst"),
                limit("economy_per_s", "economy_burst"),
            );
            let blocked_words_file = t.text_opt("blocked_words_file").and_then(|text| {
                let Some((text, at)) = text else {
                    return Some(None);
                };
                if text.len() > DATA_DIR_BYTES_MAX || text.contains('\0') {
                    file.error(
                        at,
                        format!(
                            "blocked_words_file must be a path of at most {DATA_DIR_BYTES_MAX} bytes without NUL"
                        ),
                    );
                    return None;
                }
                Some((!text.is_empty()).then(|| PathBuf::from(text)))
            });
            t.finish();
            (|| {
                Some(ChatConfig {
                    say_radius_m: say_radius_m?,
                    chat: limits.0?,
                    commands: limits.1?,
                    economy: limits.2?,
                    blocked_words_file: blocked_words_file?,
                })
            })()
        }
        None => None,
    };
    root.finish();

    Some(NodeConfig {
        name: name?,
        mode: mode?,
        data_dir: data_dir?,
        quic_listen: quic_listen?,
        admin_listen: admin_listen?,
        login_limit: login_limit?,
        state_budget: state_budget?,
        sim_threads: sim_threads?,
        auth: auth?,
        tls: tls?,
        services: services?,
        snapshot_interval: snapshot_interval?,
        cluster: cluster?,
        admin: admin?,
        chat: chat?,
    })
}

/// Longest `[cluster] advertise_addr`, in bytes.
const ADVERTISE_BYTES_MAX: usize = 256;

/// `[cluster] regions`: distinct region ids, `[]` for all. Errors point at the array (an
/// environment override's elements have no position of their own in a file).
fn region_list(t: &mut Table<'_>, file: &SourceFile<'_>) -> Option<Vec<RegionId>> {
    let (array, at) = t.array("regions")?;
    let mut ids = Vec::with_capacity(array.len());
    for value in array.iter() {
        let id = match value.get_ref() {
            toml::de::DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| (1..=RegionId::MAX).contains(v)),
            _ => None,
        };
        let problem = match id {
            None => format!(
                "regions must hold region ids between 1 and {}",
                RegionId::MAX
            ),
            Some(id) if ids.contains(&RegionId(id)) => {
                format!("region {id} is listed twice in regions")
            }
            Some(id) => {
                ids.push(RegionId(id));
                continue;
            }
        };
        file.error(at, problem);
        return None;
    }
    Some(ids)
}

/// A service URI where `""` means "none: the embedded default". `Some(None)` is that;
/// `None` an error (reported).
fn service_uri(t: &mut Table<'_>, key: &'static str, schemes: &[&str]) -> Option<Option<String>> {
    let expected = t.expected(key);
    let (text, at) = t.text(key)?;
    if text.is_empty() {
        return Some(None);
    }
    if text.len() > DATA_DIR_BYTES_MAX || !schemes.iter().any(|s| text.starts_with(s)) {
        // The URI may hold a password: it is not echoed.
        t.file.error(
            at,
            format!("{key} must be {expected} (at most {DATA_DIR_BYTES_MAX} bytes)"),
        );
        return None;
    }
    Some(Some(text.to_owned()))
}

/// A file path where `""` means "generate a dev one", which production mode refuses.
/// `Some(None)` is that empty path; `None` an error (reported).
fn optional_path(
    t: &mut Table<'_>,
    key: &'static str,
    mode: Option<NodeMode>,
) -> Option<Option<PathBuf>> {
    let (text, at) = t.text(key)?;
    if text.is_empty() {
        if mode == Some(NodeMode::Production) {
            t.file.error(
                at,
                format!("{key} is required in production mode (an empty path generates dev credentials, which production refuses)"),
            );
            return None;
        }
        return Some(None);
    }
    if text.len() > DATA_DIR_BYTES_MAX || text.contains('\0') {
        t.file.error(
            at,
            format!("{key} must be a path of at most {DATA_DIR_BYTES_MAX} bytes without NUL"),
        );
        return None;
    }
    Some(Some(PathBuf::from(text)))
}

fn socket_addr(t: &mut Table<'_>, key: &'static str) -> Option<SocketAddr> {
    let expected = t.expected(key);
    let (text, at) = t.text(key)?;
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            t.file
                .error(at, format!("{key} must be {expected}, got {text:?}"));
            None
        }
    }
}
