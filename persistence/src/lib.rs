//! Tessera's persistence: the snapshot store contract ([`snapshot`]) and its two
//! implementations, [`mongo::MongoStore`] (production) and [`embedded::EmbeddedStore`]
//! (the default; a redb file in the data dir, no setup).
//!
//! The cross-region event bus contract ([`bus`]) and its two implementations,
//! [`redis_bus::RedisBus`] (production: Streams for mail, pub/sub for ghosts) and
//! [`local_bus::LocalBus`] (the default; in-process).
//!
//! Region ownership: [`lease`] (a lease per region with a fencing epoch; Redis, and
//! in-process), and where each player is ([`location`]: one node at a time). The simulation never depends on this crate: the server moves bytes
//! between them.

pub mod audit;
pub mod breaker;
pub mod bus;
pub mod clock;
pub mod directory;
pub mod economy;
pub mod embedded;
pub mod jobs;
pub mod leaderboard;
pub mod lease;
pub mod local_bus;
pub mod location;
pub mod mongo;
pub mod node_store;
pub mod redis_bus;
pub mod snapshot;

pub use snapshot::{
    CellWrite, PlayerRecord, RegionCommit, RegionSnapshot, SCHEMA_VERSION, SnapshotStore,
    StoreError,
};
