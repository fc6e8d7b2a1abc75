//! Quantization of positions, health and input moves: the precision the wire promises.
//!
//! Positions: world coordinates in 1/32 m units as `i32` (error at most 1/64 m = 1.6 cm;
//! range +-67,108 km). Health: 1/16 point units as `u32`. Input moves: 1/1024 m units as
//! `i16` per axis (+-32 m per input, far beyond any speed cap).

use crate::math::Vec2;

/// Position units per metre.
pub const POSITION_UNITS_PER_M: f32 = 32.0;
/// Health units per health point.
pub const HEALTH_UNITS_PER_POINT: f32 = 16.0;
/// Input move units per metre.
pub const INPUT_UNITS_PER_M: f32 = 1024.0;

/// `p` in position units, or `None` if not finite or out of range.
pub fn quantize_position(p: Vec2) -> Option<[i32; 2]> {
    Some([axis(p.x)?, axis(p.y)?])
}

fn axis(v: f32) -> Option<i32> {
    let q = (f64::from(v) * f64::from(POSITION_UNITS_PER_M)).round();
    (q.is_finite() && q >= f64::from(i32::MIN) && q <= f64::from(i32::MAX)).then_some(q as i32)
}

/// The position `q` stands for.
pub fn dequantize_position(q: [i32; 2]) -> Vec2 {
    Vec2::new(
        (f64::from(q[0]) / f64::from(POSITION_UNITS_PER_M)) as f32,
        (f64::from(q[1]) / f64::from(POSITION_UNITS_PER_M)) as f32,
    )
}

/// Health in health units: negative and NaN become 0, huge values saturate.
pub fn quantize_health(h: f32) -> u32 {
    let q = (f64::from(h) * f64::from(HEALTH_UNITS_PER_POINT)).round();
    if q.is_nan() || q <= 0.0 {
        0
    } else if q >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        q as u32
    }
}

/// The health `q` stands for.
pub fn dequantize_health(q: u32) -> f32 {
    (f64::from(q) / f64::from(HEALTH_UNITS_PER_POINT)) as f32
}

/// A move in input units, each axis saturated to `i16` (non-finite becomes 0; the server
/// never sees a NaN from the wire).
pub fn quantize_move(m: Vec2) -> [i16; 2] {
    let q = |v: f32| {
        let q = (v * INPUT_UNITS_PER_M).round();
        if q.is_nan() {
            0
        } else {
            q.clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
        }
    };
    [q(m.x), q(m.y)]
}

/// The move `q` stands for.
pub fn dequantize_move(q: [i16; 2]) -> Vec2 {
    Vec2::new(
        f32::from(q[0]) / INPUT_UNITS_PER_M,
        f32::from(q[1]) / INPUT_UNITS_PER_M,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn position_error_is_at_most_half_a_unit(x in -100_000.0f32..100_000.0, y in -100_000.0f32..100_000.0) {
            let p = Vec2::new(x, y);
            let back = dequantize_position(quantize_position(p).unwrap());
            // Half a unit, plus the f32 rounding of the result itself.
            let slack = 0.5 / POSITION_UNITS_PER_M + x.abs().max(y.abs()) * f32::EPSILON;
            prop_assert!((back.x - x).abs() <= slack && (back.y - y).abs() <= slack);
        }

        #[test]
        fn health_round_trips_within_half_a_unit(h in 0.0f32..1_000_000.0) {
            let back = dequantize_health(quantize_health(h));
            prop_assert!((back - h).abs() <= 0.5 / HEALTH_UNITS_PER_POINT + h * f32::EPSILON);
        }

        #[test]
        fn moves_round_trip_within_half_a_unit(x in -30.0f32..30.0, y in -30.0f32..30.0) {
            let back = dequantize_move(quantize_move(Vec2::new(x, y)));
            prop_assert!((back.x - x).abs() <= 0.5 / INPUT_UNITS_PER_M + 1e-6);
            prop_assert!((back.y - y).abs() <= 0.5 / INPUT_UNITS_PER_M + 1e-6);
        }
    }

    #[test]
    fn non_finite_values_are_refused_or_neutral() {
        assert_eq!(quantize_position(Vec2::new(f32::NAN, 0.0)), None);
        assert_eq!(quantize_position(Vec2::new(f32::INFINITY, 0.0)), None);
        assert_eq!(quantize_position(Vec2::new(1e30, 0.0)), None);
        assert_eq!(quantize_health(f32::NAN), 0);
        assert_eq!(quantize_health(-5.0), 0);
        assert_eq!(
            quantize_move(Vec2::new(f32::NAN, f32::INFINITY)),
            [0, i16::MAX]
        );
    }
}
