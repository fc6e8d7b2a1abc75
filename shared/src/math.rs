//! Small 2D math for positions, velocities and region bounds.
//!
//! World space is metres on a plane, `x` east and `y` north, in `f32`. Only IEEE-exact
//! operations (`+ - * /`, `sqrt`) are used by the simulation so that a tick gives the same
//! bits on every platform; no trigonometry.

use serde::{Deserialize, Serialize};
use std::ops::{Add, AddAssign, Mul, Sub};

/// A 2D vector in metres (positions) or metres per second (velocities).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vec2 {
    /// East.
    pub x: f32,
    /// North.
    pub y: f32,
}

impl Vec2 {
    /// The origin.
    pub const ZERO: Vec2 = Vec2 { x: 0.0, y: 0.0 };

    /// A vector from its components.
    pub const fn new(x: f32, y: f32) -> Vec2 {
        Vec2 { x, y }
    }

    /// True if neither component is NaN or infinite. Every position and velocity that
    /// enters the simulation is checked with this first.
    pub fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite()
    }

    /// Squared length; compare against squared radii to avoid a `sqrt`.
    pub fn length_squared(self) -> f32 {
        self.x * self.x + self.y * self.y
    }

    /// Length.
    pub fn length(self) -> f32 {
        self.length_squared().sqrt()
    }

    /// Squared distance to `other`.
    pub fn distance_squared(self, other: Vec2) -> f32 {
        (self - other).length_squared()
    }

    /// This vector scaled to length at most `max` (unchanged if already shorter).
    pub fn clamp_length(self, max: f32) -> Vec2 {
        let len_sq = self.length_squared();
        if len_sq > max * max && len_sq > 0.0 {
            self * (max / len_sq.sqrt())
        } else {
            self
        }
    }
}

impl Add for Vec2 {
    type Output = Vec2;
    fn add(self, o: Vec2) -> Vec2 {
        Vec2::new(self.x + o.x, self.y + o.y)
    }
}

impl AddAssign for Vec2 {
    fn add_assign(&mut self, o: Vec2) {
        self.x += o.x;
        self.y += o.y;
    }
}

impl Sub for Vec2 {
    type Output = Vec2;
    fn sub(self, o: Vec2) -> Vec2 {
        Vec2::new(self.x - o.x, self.y - o.y)
    }
}

impl Mul<f32> for Vec2 {
    type Output = Vec2;
    fn mul(self, s: f32) -> Vec2 {
        Vec2::new(self.x * s, self.y * s)
    }
}

/// An axis-aligned box, `min` inclusive and `max` exclusive, so that adjacent regions
/// share an edge without overlapping.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aabb {
    /// Inclusive lower corner.
    pub min: Vec2,
    /// Exclusive upper corner.
    pub max: Vec2,
}

impl Aabb {
    /// A box from its corners.
    pub const fn new(min: Vec2, max: Vec2) -> Aabb {
        Aabb { min, max }
    }

    /// True if `p` lies inside (min inclusive, max exclusive).
    pub fn contains(&self, p: Vec2) -> bool {
        p.x >= self.min.x && p.x < self.max.x && p.y >= self.min.y && p.y < self.max.y
    }

    /// Width and height.
    pub fn size(&self) -> Vec2 {
        self.max - self.min
    }

    /// The centre point.
    pub fn center(&self) -> Vec2 {
        Vec2::new(
            self.min.x + (self.max.x - self.min.x) * 0.5,
            self.min.y + (self.max.y - self.min.y) * 0.5,
        )
    }

    /// The box grown by `by` on every side.
    pub fn expanded(&self, by: f32) -> Aabb {
        Aabb::new(
            Vec2::new(self.min.x - by, self.min.y - by),
            Vec2::new(self.max.x + by, self.max.y + by),
        )
    }

    /// The area the two boxes share, if any.
    pub fn intersection(&self, other: &Aabb) -> Option<Aabb> {
        self.overlaps(other).then(|| {
            Aabb::new(
                Vec2::new(self.min.x.max(other.min.x), self.min.y.max(other.min.y)),
                Vec2::new(self.max.x.min(other.max.x), self.max.y.min(other.max.y)),
            )
        })
    }

    /// The distance from `p` to the box (0 inside).
    pub fn distance_to(&self, p: Vec2) -> f32 {
        let dx = (self.min.x - p.x).max(p.x - self.max.x).max(0.0);
        let dy = (self.min.y - p.y).max(p.y - self.max.y).max(0.0);
        (dx * dx + dy * dy).sqrt()
    }

    /// True if the two boxes share any area.
    pub fn overlaps(&self, other: &Aabb) -> bool {
        self.min.x < other.max.x
            && other.min.x < self.max.x
            && self.min.y < other.max.y
            && other.min.y < self.max.y
    }

    /// The closest point to `p` that lies inside the box (the exclusive max edge is pulled
    /// in by one ulp so that the result satisfies [`Aabb::contains`]).
    pub fn clamp(&self, p: Vec2) -> Vec2 {
        Vec2::new(
            p.x.clamp(self.min.x, self.max.x.next_down()),
            p.y.clamp(self.min.y, self.max.y.next_down()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_lands_inside_half_open_box() {
        let b = Aabb::new(Vec2::new(0.0, 0.0), Vec2::new(10.0, 10.0));
        for p in [
            Vec2::new(10.0, 10.0),
            Vec2::new(-3.0, 20.0),
            Vec2::new(5.0, 5.0),
        ] {
            assert!(b.contains(b.clamp(p)), "{p:?}");
        }
        assert!(!b.contains(Vec2::new(10.0, 5.0)));
    }

    #[test]
    fn clamp_length_caps_and_keeps_direction() {
        let v = Vec2::new(3.0, 4.0).clamp_length(1.0);
        assert!((v.length() - 1.0).abs() < 1e-6);
        assert_eq!(Vec2::new(0.1, 0.0).clamp_length(1.0), Vec2::new(0.1, 0.0));
    }
}
