//! Tessera's shared vocabulary: identifiers, 2D math and the configuration schemas, used by
//! the simulation, the server and (later) game clients.
//!
//! What it is not: with default features it performs no IO beyond reading configuration
//! files on request, and depends on no async runtime, network or database crate. Feature
//! `quic` adds async frame IO for QUIC streams; feature `client` the Rust client library.

#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod ids;
pub mod math;
pub mod protocol;
