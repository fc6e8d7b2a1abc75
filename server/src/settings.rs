//! Where every subcommand finds its node's settings: one resolution for `serve`, `bots`,
//! `token` and `admin-key`, so that a command run beside a node reads what the node reads.
//!
//! The order, later wins: the config directory (`--config DIR`, or `TESSERA_CONFIG`; the
//! embedded default world without either), then the `TESSERA__SECTION__KEY` environment
//! overrides, then `--data-dir`. `serve` creates its data dir and the dev files in it;
//! every other command only reads a node's data dir, and says exactly what is missing
//! instead of creating an empty one (a fresh `./data` holds a new dev certificate and
//! secret the running node does not know).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tessera_shared::config::{self, Config};

/// The flags that locate a node: its config directory and its data dir.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NodeArgs {
    /// Config directory (tessera.toml, world.toml, balance.toml). Default: the embedded
    /// default world. `TESSERA__SECTION__KEY` environment variables override its keys.
    #[arg(long, env = "TESSERA_CONFIG", value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// The node's data dir (embedded store, dev certificate, dev secrets). Default:
    /// `[node] data_dir` of the config (`./data` in the embedded default).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A command's resolved node settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The validated configuration, `--data-dir` applied.
    pub config: Arc<Config>,
    /// The config directory it came from (`None`: the embedded default).
    pub config_dir: Option<PathBuf>,
}

impl NodeArgs {
    /// Loads the config (directory or embedded default, environment overrides applied)
    /// and applies `--data-dir`.
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let mut config = load_config(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            anyhow::ensure!(
                !dir.as_os_str().is_empty(),
                "--data-dir: an empty path; give the node's data dir"
            );
            config.node.data_dir = dir.clone();
        }
        Ok(Settings {
            config: Arc::new(config),
            config_dir: self.config.clone(),
        })
    }
}

impl Settings {
    /// The node's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.config.node.data_dir
    }

    /// `file` (what it is: `what`) in the data dir of a node that has run, or an error
    /// saying where it looked and how to point the command at the node. Never creates it.
    pub fn node_file(&self, file: &str, what: &str) -> anyhow::Result<PathBuf> {
        let dir = self.data_dir();
        let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        anyhow::ensure!(
            dir.is_dir(),
            "no node data here: {} does not exist. Run this from the directory the node was \
             started in (`tessera serve` creates ./data there), or pass --data-dir DIR \
             (or --config DIR naming the node's config)",
            shown.display()
        );
        let path = dir.join(file);
        anyhow::ensure!(
            path.is_file(),
            "{} has no {what} ({file}): it is written by a dev-mode node at start; start the \
             node with this data dir first, or pass --data-dir DIR naming the node's",
            shown.display()
        );
        Ok(path)
    }
}

/// The config in `dir` with the environment's overrides, or the embedded default world.
pub fn load_config(dir: Option<&Path>) -> anyhow::Result<Config> {
    match dir {
        Some(dir) => {
            anyhow::ensure!(
                dir.is_dir(),
                "no config directory at {}: give a directory holding tessera.toml, world.toml \
                 and balance.toml",
                dir.display()
            );
            config::load_dir(dir).map_err(|errors| {
                anyhow::anyhow!("invalid configuration in {}:\n{errors}", dir.display())
            })
        }
        None => {
            tracing::debug!("no --config given: using the embedded default world");
            // The embedded files are known good; only TESSERA__* overrides can fail here.
            config::process_env()
                .and_then(|env| config::load_strs(&config::ConfigSources::embedded(), env))
                .map_err(|errors| {
                    anyhow::anyhow!(
                        "invalid environment override of the embedded config:\n{errors}"
                    )
                })
        }
    }
    .context("loading the node's settings")
}

/// The address a client on this machine reaches a node listening on `listen` at: an
/// unspecified address (`0.0.0.0`, `::`) becomes loopback, the port stays.
pub fn local_address(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, listen.port())
}

/// What `tessera serve` prints once at start: where the node listens and the commands
/// that reach it (bots, a token, the admin key), with the flags they need to find this
/// node's settings from another directory.
pub fn connect_help(
    config: &Config,
    config_dir: Option<&Path>,
    quic: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> String {
    let node = &config.node;
    let mut flags = String::new();
    if let Some(dir) = config_dir {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        flags += &format!(" --config {}", dir.display());
    }
    let data_dir = std::path::absolute(&node.data_dir).unwrap_or_else(|_| node.data_dir.clone());
    let mut text = format!(
        "Tessera node {:?} ({} mode) is running: QUIC on {quic}, admin API on http://{admin}, \
         data in {}.\n",
        node.name,
        match node.mode {
            config::NodeMode::Dev => "dev",
            config::NodeMode::Production => "production",
        },
        data_dir.display()
    );
    let dev_cert = node.tls.cert_file.is_none();
    if dev_cert {
        text += &format!("  load test:  tessera bots{flags} --count 200 --duration 30s\n");
    }
    if node.auth.algorithm == config::TokenAlgorithm::Hs256 {
        text += &format!("  a token:    tessera token{flags} --player ada\n");
    }
    if node.mode == config::NodeMode::Dev && node.admin.keys_file.is_none() {
        text += &format!(
            "  admin API:  curl -H \"Authorization: Bearer $(tessera admin-key{flags} --dev)\" \
             http://{admin}/v1/regions\n"
        );
    } else {
        text += "  admin API:  keys from [admin] keys_file (`tessera admin-key --role admin` makes one)\n";
    }
    text += &format!(
        "  Run these in this directory, or add --data-dir {} from elsewhere.",
        data_dir.display()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_data_dir_is_named_and_never_created() {
        let root = std::env::temp_dir().join(format!("tessera-settings-{}", std::process::id()));
        let missing = root.join("data");
        let args = NodeArgs {
            config: None,
            data_dir: Some(missing.clone()),
        };
        let settings = args.resolve().expect("the embedded default loads");
        let error = settings
            .node_file(crate::auth::DEV_SECRET_FILE, "dev token secret")
            .expect_err("no data dir");
        let text = format!("{error:#}");
        assert!(text.contains("no node data here"), "{text}");
        assert!(text.contains("--data-dir"), "{text}");
        assert!(!missing.exists(), "the check created the data dir");

        std::fs::create_dir_all(&missing).expect("temp dir");
        let error = settings
            .node_file(crate::auth::DEV_SECRET_FILE, "dev token secret")
            .expect_err("no secret in it");
        assert!(
            format!("{error:#}").contains("has no dev token secret"),
            "{error:#}"
        );
        std::fs::write(missing.join(crate::auth::DEV_SECRET_FILE), b"x").expect("write");
        assert!(
            settings
                .node_file(crate::auth::DEV_SECRET_FILE, "dev token secret")
                .is_ok()
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_start_message_names_the_commands_and_the_flags_to_reach_this_node() {
        let settings = NodeArgs::default().resolve().expect("embedded default");
        let text = connect_help(
            &settings.config,
            Some(Path::new("/etc/tessera")),
            "127.0.0.1:4433".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        assert!(
            text.contains("tessera bots --config /etc/tessera --count 200"),
            "{text}"
        );
        assert!(
            text.contains("tessera token --config /etc/tessera --player ada"),
            "{text}"
        );
        assert!(
            text.contains("admin-key --config /etc/tessera --dev"),
            "{text}"
        );
        assert!(text.contains("--data-dir /"), "{text}");
    }

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        assert_eq!(
            local_address("0.0.0.0:4433".parse().unwrap()),
            "127.0.0.1:4433".parse().unwrap()
        );
        assert_eq!(
            local_address("[::]:9".parse().unwrap()),
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            local_address("10.0.0.5:4433".parse().unwrap()),
            "10.0.0.5:4433".parse().unwrap()
        );
    }
}
