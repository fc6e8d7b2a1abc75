//! Tessera's persistence: the snapshot store contract ([`snapshot`]) and its two
//! implementations, [`mongo::MongoStore`] (production) and [`embedded::EmbeddedStore`]
//! (the default; a redb file in the data dir, no setup).
//!
//! Still to come here: the event bus (Redis Streams and pub/sub, in-process) and region
//! leases. The simulation never depends on this crate: the server moves bytes between them.

pub mod embedded;
pub mod mongo;
pub mod snapshot;

pub use snapshot::{
    CellWrite, PlayerRecord, RegionCommit, RegionSnapshot, SCHEMA_VERSION, SnapshotStore,
    StoreError,
};
