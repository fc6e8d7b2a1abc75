//! Tessera's integration tests: one binary, one module per capability.

mod util;

mod admin;
mod bounds;
mod bulk;
mod bus;
mod chat;
mod cli;
mod cluster;
mod cluster_sim;
mod console;
mod crash;
mod deploy;
mod determinism;
mod directory;
mod economy;
mod economy_crash;
mod emergency;
mod feed;
mod handoff;
mod interest;
mod invalid_values;
mod layers;
mod lease;
mod location;
mod movement;
mod net;
mod persistence;
mod private_mongo;
mod private_redis;
mod region_control;
mod region_snapshots;
mod reload;
mod sans_io;
mod sessions;
mod vectors;
