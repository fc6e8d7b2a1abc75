//! Tessera's region simulation: each region of the world is one deterministic bevy_ecs
//! [`bevy_ecs::world::World`] stepped by a single-threaded schedule, one tick at a time.
//!
//! The public surface is small: [`Region::new`], [`Region::step`] (a [`TickInput`] in, a
//! [`TickOutput`] out) and [`Region::world_hash`]. Inside, one plugin per feature
//! (`inputs`, `ai`, `movement`, `combat`, `life`, `border`, `grid`, `interest`), each
//! with a public `SystemSet`, meeting through components and resources.
//!
//! What it is not: it does no IO at all. No clock, no OS randomness, no sockets, no files;
//! time is the tick number and `dt`, randomness a seeded ChaCha8 stream. The server moves
//! inputs in and outputs out at tick boundaries.

pub mod ai;
pub mod border;
pub mod combat;
pub mod components;
mod error;
pub mod grid;
pub mod hash;
pub mod inputs;
pub mod interest;
pub mod io;
pub mod life;
pub mod loot;
pub mod movement;
pub mod plugin;
mod region;
pub mod resources;
pub mod scripted;
pub mod snapshot;
mod spawn;

pub use error::RegionError;
pub use io::{TickInput, TickOutput};
pub use region::{Region, RegionCounts};
