//! Which pixels a shape covers, and which a texture darkens.

/// Whether the point `(u, v)`, in the object's frame (centered, unrotated, y down),
/// lies in shape `shape` of circumradius `r`.
pub fn contains(shape: usize, u: f32, v: f32, r: f32) -> bool {
    let d2 = u * u + v * v;
    match super::catalogue::SHAPES[shape] {
        "circle" => d2 <= r * r,
        "ring" => d2 <= r * r && d2 >= (0.55 * r) * (0.55 * r),
        "square" => u.abs() <= 0.75 * r && v.abs() <= 0.75 * r,
        "diamond" => u.abs() + v.abs() <= r,
        "cross" => {
            let (a, b) = (u.abs(), v.abs());
            (a <= 0.3 * r && b <= r) || (b <= 0.3 * r && a <= r)
        }
        "triangle" => in_polygon(u, v, &regular(3, r, 1.0)),
        "hexagon" => in_polygon(u, v, &regular(6, r, 1.0)),
        "star" => in_polygon(u, v, &regular(5, r, 0.45)),
        other => unreachable!("shape {other} has no outline"),
    }
}

/// A regular polygon (`inner == 1`) or star (`inner < 1`: every other vertex at
/// `inner * r`) with `n` points, the first pointing up.
fn regular(n: usize, r: f32, inner: f32) -> Vec<(f32, f32)> {
    let steps = if inner < 1.0 { 2 * n } else { n };
    (0..steps)
        .map(|i| {
            let angle =
                -std::f32::consts::FRAC_PI_2 + i as f32 * std::f32::consts::TAU / steps as f32;
            let radius = if inner < 1.0 && i % 2 == 1 {
                inner * r
            } else {
                r
            };
            (radius * angle.cos(), radius * angle.sin())
        })
        .collect()
}

/// Even-odd rule.
fn in_polygon(x: f32, y: f32, vertices: &[(f32, f32)]) -> bool {
    let mut inside = false;
    let mut j = vertices.len() - 1;
    for i in 0..vertices.len() {
        let ((xi, yi), (xj, yj)) = (vertices[i], vertices[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Whether texture `texture` is in its bright phase at image pixel `(x, y)`.
/// Patterns are laid in image coordinates with the object's period and phase.
pub fn bright(texture: usize, x: usize, y: usize, period: usize, phase: usize) -> bool {
    let half = period / 2;
    let (px, py) = (x + phase, y + phase);
    match super::catalogue::TEXTURES[texture] {
        "solid" => true,
        "stripes-horizontal" => (py / half).is_multiple_of(2),
        "stripes-vertical" => (px / half).is_multiple_of(2),
        "checker" => (px / half + py / half).is_multiple_of(2),
        "dots" => {
            let (dx, dy) = (
                (px % period) as f32 - half as f32,
                (py % period) as f32 - half as f32,
            );
            dx * dx + dy * dy > (0.3 * period as f32).powi(2)
        }
        other => unreachable!("texture {other} has no pattern"),
    }
}
