//! Tessera's persistence: snapshot stores (MongoDB and an embedded default), the event bus
//! (Redis and in-process) and region leases.
//!
//! What it is now: empty. The stores arrive with the persistence issue; the crate exists so
//! that the workspace layout, and the rule that the simulation never depends on it, are
//! fixed from the start.
