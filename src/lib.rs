//! Tessera: an authoritative region simulation server for MMO-style games.
//!
//! This facade re-exports the workspace crates under one name:
//! - [`shared`]: ids, math, configuration schemas (and later the wire protocol);
//! - [`regions`]: the deterministic, IO-free region simulation;
//! - [`persistence`]: storage models and stores.
//!
//! The `tessera` binary lives in the `tessera-server` crate. This package owns the
//! integration tests (`tests/main.rs`) and the criterion benches (`benches/`).

pub use tessera_persistence as persistence;
pub use tessera_regions as regions;
pub use tessera_shared as shared;
