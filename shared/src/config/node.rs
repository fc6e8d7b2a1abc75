//! `tessera.toml` and its environment overrides.

use std::net::SocketAddr;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeTable;

use super::reader::{At, EnvOverride, SourceFile, Table};
use super::schema::{
    AdminConfig, AuthConfig, ClusterConfig, NodeConfig, NodeMode, ServicesConfig, TlsConfig,
    TokenAlgorithm,
};
use super::{NAME_CHARS_MAX, is_node_name};
use crate::ids::RegionId;

/// Environment variables starting with this override keys of `tessera.toml`.
pub(super) const ENV_PREFIX: &str = "TESSERA__";

/// The sections of `tessera.toml`.
const SECTIONS: &[&str] = &[
    "node",
    "net",
    "sim",
    "auth",
    "tls",
    "services",
    "persistence",
    "cluster",
    "admin",
];

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
        if !SECTIONS.contains(&section.as_str()) {
            file.error(
                At::Env(var),
                format!(
                    "unknown section {section:?} of tessera.toml; allowed: {}",
                    SECTIONS.join(", ")
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
    let mut root = Table::root(file, doc);

    let node = root.table("node").map(|t| t.with_env(env_for("node")));
    let (name, mode, data_dir) = match node {
        Some(mut t) => {
            let name = t
                .string("name", "a node name such as \"node-1\"")
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
            let mode = t
                .string("mode", "\"dev\" or \"production\"")
                .and_then(|(mode, at)| match mode {
                    "dev" => Some(NodeMode::Dev),
                    "production" => Some(NodeMode::Production),
                    other => {
                        file.error(
                            at,
                            format!("mode must be \"dev\" or \"production\", got {other:?}"),
                        );
                        None
                    }
                });
            let data_dir = t
                .string("data_dir", "a directory path such as \"./data\"")
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
    let (quic_listen, admin_listen) = match net {
        Some(mut t) => {
            let quic = socket_addr(&mut t, "quic_listen", "127.0.0.1:4433");
            let admin = socket_addr(&mut t, "admin_listen", "127.0.0.1:8080");
            t.finish();
            (quic, admin)
        }
        None => (None, None),
    };

    let sim = root.table("sim").map(|t| t.with_env(env_for("sim")));
    let sim_threads = match sim {
        Some(mut t) => {
            let threads = t.u32_in("threads", 0, 256);
            t.finish();
            threads
        }
        None => None,
    };

    let auth = root.table("auth").map(|t| t.with_env(env_for("auth")));
    let auth = match auth {
        Some(mut t) => {
            let mut name = |key: &'static str, example: &str| {
                t.string(key, example).and_then(|(text, at)| {
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
            let issuer = name("issuer", "the iss of login tokens, such as \"tessera-dev\"");
            let audience = name("audience", "the aud of login tokens, such as \"tessera\"");
            const ALGORITHMS: &str = "\"HS256\", \"RS256\", \"ES256\" or \"EdDSA\"";
            let algorithm = t
                .string("algorithm", ALGORITHMS)
                .and_then(|(text, at)| match text {
                    "HS256" => Some(TokenAlgorithm::Hs256),
                    "RS256" => Some(TokenAlgorithm::Rs256),
                    "ES256" => Some(TokenAlgorithm::Es256),
                    "EdDSA" => Some(TokenAlgorithm::EdDsa),
                    other => {
                        file.error(at, format!("algorithm must be {ALGORITHMS}, got {other:?}"));
                        None
                    }
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
            let redis_url = service_uri(&mut t, "redis_url", &["redis://", "rediss://"]);
            let mongodb_database = t
                .string("mongodb_database", "a database name such as \"tessera\"")
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
            let seconds = t.u32_in("snapshot_interval_s", 1, 3_600);
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
                .string("advertise_addr", "a host:port such as \"10.0.0.5:4433\", or \"\"")
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
    root.finish();

    Some(NodeConfig {
        name: name?,
        mode: mode?,
        data_dir: data_dir?,
        quic_listen: quic_listen?,
        admin_listen: admin_listen?,
        sim_threads: sim_threads?,
        auth: auth?,
        tls: tls?,
        services: services?,
        snapshot_interval: snapshot_interval?,
        cluster: cluster?,
        admin: admin?,
    })
}

/// Longest `[cluster] advertise_addr`, in bytes.
const ADVERTISE_BYTES_MAX: usize = 256;

/// `[cluster] regions`: distinct region ids, `[]` for all. Errors point at the array (an
/// environment override's elements have no position of their own in a file).
fn region_list(t: &mut Table<'_>, file: &SourceFile<'_>) -> Option<Vec<RegionId>> {
    let expected = "an array of region ids such as [1, 2], or [] for every region";
    let (array, at) = t.array("regions", expected)?;
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
    let expected = format!(
        "a URI starting with {}, or \"\" for none",
        schemes.join(" or ")
    );
    let (text, at) = t.string(key, &expected)?;
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
    let (text, at) = t.string(key, "a file path, or \"\" for a generated dev one")?;
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

fn socket_addr(t: &mut Table<'_>, key: &'static str, example: &str) -> Option<SocketAddr> {
    let expected = format!("an IP address and port such as \"{example}\" or \"[::1]:4433\"");
    let (text, at) = t.string(key, &expected)?;
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            t.file
                .error(at, format!("{key} must be {expected}, got {text:?}"));
            None
        }
    }
}
