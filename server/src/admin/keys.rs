//! API keys of the admin HTTP API and their roles.
//!
//! The keys file (`[admin] keys_file`) holds, per key, a name (who, in the audit log), a
//! role, and the SHA-256 of the key: never the key itself, so the file can be read by
//! anyone who deploys the node without handing out access. Clients send the key as
//! `Authorization: Bearer <key>`; the node hashes it and looks the hash up. In dev mode
//! without a keys file, a dev admin key is generated into the data dir.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// What a key may do. Each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: node status, regions, placement, audit log, metrics.
    Viewer,
    /// Region control: assign, release, transfer.
    Orchestrator,
    /// Everything: player actions, config reload.
    Admin,
}

impl Role {
    /// The role's name, as in the keys file.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Orchestrator => "orchestrator",
            Role::Admin => "admin",
        }
    }
}

/// Whether `name` can be a key's name: 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Who is calling: the key's name and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The key's name.
    pub name: String,
    /// The key's role.
    pub role: Role,
}

/// Longest accepted key, in bytes (a header longer than this is refused unread).
pub const KEY_BYTES_MAX: usize = 256;
/// Keys a keys file may hold.
pub const KEYS_MAX: usize = 1_024;
/// Largest keys file, in bytes.
pub const KEYS_FILE_BYTES_MAX: usize = 1024 * 1024;
/// The dev admin key's file in the data dir (dev mode without `[admin] keys_file`).
pub const DEV_ADMIN_KEY_FILE: &str = "dev-admin-key";

/// The keys the node accepts, by the SHA-256 of the key.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], Caller>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    role: Role,
    sha256: String,
}

impl ApiKeys {
    /// The keys `keys_file` lists, or (none given, dev mode only) the dev admin key,
    /// generated into `data_dir` on first use.
    pub fn load(keys_file: Option<&Path>, dev: bool, data_dir: &Path) -> anyhow::Result<ApiKeys> {
        match keys_file {
            None if !dev => anyhow::bail!("production mode needs [admin] keys_file"),
            Some(path) => {
                let text = read_bounded(path)?;
                Self::parse(&text).with_context(|| format!("{}", path.display()))
            }
            None => {
                let key = dev_admin_key(data_dir)?;
                let mut keys = ApiKeys::default();
                keys.insert(sha256(key.as_bytes()), "dev-admin".into(), Role::Admin);
                Ok(keys)
            }
        }
    }

    /// Parses a keys file.
    pub fn parse(text: &str) -> anyhow::Result<ApiKeys> {
        let file: KeysFile = toml::from_str(text).context("not a keys file")?;
        anyhow::ensure!(
            file.keys.len() <= KEYS_MAX,
            "{} keys; at most {KEYS_MAX}",
            file.keys.len()
        );
        let mut keys = ApiKeys::default();
        for (i, entry) in file.keys.into_iter().enumerate() {
            anyhow::ensure!(
                is_valid_name(&entry.name),
                "keys[{i}].name must be 1 to 64 characters of A-Z a-z 0-9 _ . -, got {:?}",
                entry.name
            );
            let hash = parse_hex32(&entry.sha256).with_context(|| {
                format!("keys[{i}].sha256 must be 64 hex digits (the SHA-256 of the key)")
            })?;
            anyhow::ensure!(
                !keys.by_hash.contains_key(&hash),
                "keys[{i}] ({}) repeats the hash of an earlier key",
                entry.name
            );
            keys.insert(hash, entry.name, entry.role);
        }
        Ok(keys)
    }

    fn insert(&mut self, hash: [u8; 32], name: String, role: Role) {
        self.by_hash.insert(hash, Caller { name, role });
    }

    /// The caller a presented key belongs to, if any.
    pub fn caller(&self, key: &str) -> Option<&Caller> {
        if key.is_empty() || key.len() > KEY_BYTES_MAX {
            return None;
        }
        // Looked up by hash: how long the lookup takes says nothing about the key.
        self.by_hash.get(&sha256(key.as_bytes()))
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether there are none (then every request is refused).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// A new random key (32 bytes from the OS, hex) and its keys-file entry.
pub fn new_key(name: &str, role: Role) -> anyhow::Result<(String, String)> {
    let key = random_hex(32)?;
    let entry = format!(
        "[[keys]]\nname = {name:?}\nrole = {:?}\nsha256 = {:?}\n",
        role.name(),
        hex(&sha256(key.as_bytes()))
    );
    Ok((key, entry))
}

/// The dev admin key in `data_dir`, generated on first use.
pub fn dev_admin_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(DEV_ADMIN_KEY_FILE);
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        std::fs::write(&path, random_hex(32)?)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::warn!(path = %path.display(), "generated a DEV admin API key; not for production");
    }
    let key =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(key.trim().to_owned())
}

fn read_bounded(path: &Path) -> anyhow::Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= KEYS_FILE_BYTES_MAX as u64,
        "{} is {len} bytes; at most {KEYS_FILE_BYTES_MAX}",
        path.display()
    );
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn random_hex(n: usize) -> anyhow::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the OS random number generator failed"))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(text: &str) -> anyhow::Result<[u8; 32]> {
    anyhow::ensure!(text.len() == 64, "{} characters", text.len());
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .ok()
            .context("not hex")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_hash_with_their_role() {
        let (key, entry) = new_key("ops", Role::Orchestrator).unwrap();
        let keys = ApiKeys::parse(&entry).unwrap();
        assert_eq!(
            keys.caller(&key),
            Some(&Caller {
                name: "ops".into(),
                role: Role::Orchestrator
            })
        );
        assert_eq!(keys.caller("not-the-key"), None);
        assert_eq!(keys.caller(""), None);
        assert!(entry.contains(&hex(&sha256(key.as_bytes()))));
        assert!(!entry.contains(&key), "the entry never holds the key");
    }

    #[test]
    fn bad_keys_files_are_errors_that_say_where() {
        for (text, expected) in [
            (
                "[[keys]]\nname = \"a\"\nrole = \"god\"\nsha256 = \"00\"",
                "unknown variant",
            ),
            (
                "[[keys]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"zz\"",
                "keys[0].sha256",
            ),
            (
                "[[keys]]\nname = \"a b\"\nrole = \"admin\"\nsha256 = \"00\"",
                "keys[0].name",
            ),
            (
                "[[keys]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"00\"\nkey = \"x\"",
                "unknown field",
            ),
        ] {
            let err = format!("{:#}", ApiKeys::parse(text).unwrap_err());
            assert!(err.contains(expected), "{err}");
        }
        let twice = format!("{}\n{}", new_key("a", Role::Viewer).unwrap().1, {
            let (_, entry) = new_key("b", Role::Viewer).unwrap();
            entry
        });
        assert_eq!(ApiKeys::parse(&twice).unwrap().len(), 2);
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(Role::Viewer < Role::Orchestrator && Role::Orchestrator < Role::Admin);
    }
}
