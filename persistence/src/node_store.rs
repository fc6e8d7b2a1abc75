//! The store a node is configured with: MongoDB when `[services] mongodb_uri` is set, the
//! embedded redb store in the data dir otherwise. One type, so that the rest of the node
//! is written once.

use tessera_shared::ids::{PlayerId, RegionId};

use crate::embedded::EmbeddedStore;
use crate::mongo::MongoStore;
use crate::snapshot::{PlayerRecord, RegionCommit, RegionSnapshot, SnapshotStore, StoreError};

/// Either implementation of the [`SnapshotStore`] contract.
#[derive(Clone, Debug)]
pub enum NodeStore {
    /// The embedded default.
    Embedded(EmbeddedStore),
    /// MongoDB (production).
    Mongo(MongoStore),
}

impl NodeStore {
    /// Which one this is, for logs and health.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeStore::Embedded(_) => "embedded",
            NodeStore::Mongo(_) => "mongodb",
        }
    }
}

impl SnapshotStore for NodeStore {
    async fn commit(&self, commit: &RegionCommit) -> Result<(), StoreError> {
        match self {
            NodeStore::Embedded(s) => s.commit(commit).await,
            NodeStore::Mongo(s) => s.commit(commit).await,
        }
    }

    async fn load(&self, region: RegionId) -> Result<Option<RegionSnapshot>, StoreError> {
        match self {
            NodeStore::Embedded(s) => s.load(region).await,
            NodeStore::Mongo(s) => s.load(region).await,
        }
    }

    async fn save_player(&self, record: &PlayerRecord) -> Result<(), StoreError> {
        match self {
            NodeStore::Embedded(s) => s.save_player(record).await,
            NodeStore::Mongo(s) => s.save_player(record).await,
        }
    }

    async fn load_player(&self, player: PlayerId) -> Result<Option<PlayerRecord>, StoreError> {
        match self {
            NodeStore::Embedded(s) => s.load_player(player).await,
            NodeStore::Mongo(s) => s.load_player(player).await,
        }
    }
}
