//! Tessera's cluster protocol of one node, as a deterministic state machine: which regions
//! the node holds (leases and their deadlines), where its players are (location claims,
//! logins waiting for them), and the handoffs it sends and receives (hand over, publish,
//! acknowledge, redirect). The [`Ledger`] owns all of that state; it is driven by events
//! (the tick's departures and arrivals, the stores' answers, timeouts with an explicit
//! `now`) and emits actions ([`IoAction`]s for the stores and the bus, [`DriverAction`]s
//! for the tick driver, login outcomes for sessions).
//!
//! What it is not: it does no IO. It reads no clock, opens no socket, spawns nothing; the
//! server's tokio glue (`tessera_server::cluster`) carries its actions out against Redis
//! and feeds the answers back, and the deterministic simulator
//! (`tessera_server::cluster::sim`) does the same against in-process stores with a virtual
//! clock and injected faults, replaying any run from its seed. The model is quinn-proto's
//! `Connection` (`handle_event`, `poll_transmit`, `handle_timeout(now)`) and the
//! simulation testing of FoundationDB and TigerBeetle's VOPR.

pub mod ledger;
pub mod types;
pub mod wire;

pub use ledger::{
    Answer, DriverAction, IoAction, Ledger, LedgerStats, LoginId, LoginOutcome, LoginRefusal, OpId,
    SessionEnd, Timing,
};
pub use types::{Claim, Lease, Move, STOP_MARGIN};
