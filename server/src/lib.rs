//! The `tessera` node: drives the region simulation and (later) connects it to clients,
//! other nodes and storage. This crate owns all IO; the simulation in `tessera-regions`
//! has none.
//!
//! Modules: [`auth`] verifies login tokens; [`net`] is the QUIC edge (endpoint,
//! sessions, TLS); [`node`] the tick driver that connects sessions to regions; [`local`] steps this node's regions in parallel and routes handoffs between
//! them; [`serve`] is the paced tick driver; [`sim`] runs the world headless for
//! measurement and determinism checks.

pub mod admin;
pub mod auth;
pub mod balance_report;
pub mod bots;
pub mod chat;
pub mod cli;
pub mod cluster;
pub mod cluster_sim;
pub mod control;
pub mod directory;
pub mod economy;
pub mod feed;
pub mod local;
pub mod map;
pub mod net;
pub mod node;
pub mod placement;
pub mod players;
pub mod reload;
pub mod serve;
pub mod settings;
pub mod sim;
pub mod snapshots;
mod views;
