//! The plugin mechanism: each feature adds its resources and systems to a region's world
//! and schedule, under its own public `SystemSet`. (bevy_ecs without bevy_app has no
//! `Plugin` trait; this is the same idea, without the app.)

use bevy_ecs::prelude::*;

/// A feature of the region simulation.
pub trait RegionPlugin {
    /// Inserts the feature's resources into `world` and its systems into `schedule`.
    fn build(&self, world: &mut World, schedule: &mut Schedule);
}
