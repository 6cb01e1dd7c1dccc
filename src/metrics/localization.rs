//! Does the map point at the object? Where pixel masks exist (the demo world has
//! them): the pointing game (Zhang et al. 2016) hits when the map's maximum lies on
//! the object; the energy share (Wang et al. 2020, Score-CAM's "energy-based pointing
//! game") is the fraction of the positive attribution that lies on it. A uniformly
//! random point hits with probability equal to the object's area fraction: that is
//! the baseline both are read against.

/// Whether the largest value of `map` (row-major, first on ties) lies in `mask`.
pub fn pointing_hit(map: &[f32], mask: &[bool]) -> bool {
    assert_eq!(map.len(), mask.len(), "map and mask differ in size");
    let best = map
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > map[best] { i } else { best });
    mask[best]
}

/// The share of the map's positive mass that lies in `mask` (0 for a map with none).
pub fn mass_inside(map: &[f32], mask: &[bool]) -> f64 {
    assert_eq!(map.len(), mask.len(), "map and mask differ in size");
    let (inside, total) = map.iter().zip(mask).fold((0.0, 0.0), |(i, t), (&v, &m)| {
        let v = v.max(0.0) as f64;
        (if m { i + v } else { i }, t + v)
    });
    if total > 0.0 { inside / total } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointing_and_mass() {
        let mask = [false, true, true, false];
        assert!(pointing_hit(&[0.1, 0.9, 0.2, 0.3], &mask));
        assert!(!pointing_hit(&[0.1, 0.2, 0.2, 0.3], &mask));
        assert!((mass_inside(&[1.0, 2.0, 1.0, -5.0], &mask) - 0.75).abs() < 1e-12);
        assert_eq!(mass_inside(&[0.0; 4], &mask), 0.0);
    }
}
