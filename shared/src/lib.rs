//! Tessera's shared vocabulary: identifiers, 2D math and the configuration schemas, used by
//! the simulation, the server and (later) game clients.
//!
//! What it is not: it performs no IO beyond reading configuration files on request, and
//! with default features depends on no async runtime, network or database crate.

pub mod config;
pub mod ids;
pub mod math;
pub mod protocol;
