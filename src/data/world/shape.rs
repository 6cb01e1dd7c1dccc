//! Which pixels a shape covers, and which a texture darkens.

/// Shape `shape` of circumradius `r`, ready to test points against: a polygon's
/// vertices are laid once, not for every pixel.
pub struct Outline {
    shape: &'static str,
    r: f32,
    vertices: Vec<(f32, f32)>,
}

impl Outline {
    pub fn new(shape: usize, r: f32) -> Self {
        let shape = super::catalogue::SHAPES[shape];
        let vertices = match shape {
            "triangle" => regular(3, r, 1.0),
            "hexagon" => regular(6, r, 1.0),
            "star" => regular(5, r, 0.45),
            _ => Vec::new(),
        };
        Self { shape, r, vertices }
    }

    /// A bound on `|u|` and `|v|` of the points inside: every outline lies in the
    /// square of side `2 r` (the square's corners and the cross's arms reach past
    /// the circle of radius `r`, not past that square).
    pub fn reach(&self) -> f32 {
        self.r
    }

    /// Whether the point `(u, v)`, in the object's frame (centered, unrotated, y
    /// down), lies inside.
    pub fn contains(&self, u: f32, v: f32) -> bool {
        let r = self.r;
        let d2 = u * u + v * v;
        match self.shape {
            "circle" => d2 <= r * r,
            "ring" => d2 <= r * r && d2 >= (0.55 * r) * (0.55 * r),
            "square" => u.abs() <= 0.75 * r && v.abs() <= 0.75 * r,
            "diamond" => u.abs() + v.abs() <= r,
            "cross" => {
                let (a, b) = (u.abs(), v.abs());
                (a <= 0.3 * r && b <= r) || (b <= 0.3 * r && a <= r)
            }
            "triangle" | "hexagon" | "star" => in_polygon(u, v, &self.vertices),
            other => unreachable!("shape {other} has no outline"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenes draw each object only within √2 times its reach of its centre, so no
    /// outline may reach past it, at any size.
    #[test]
    fn every_outline_lies_within_its_reach() {
        for shape in 0..super::super::catalogue::SHAPES.len() {
            for r in [6.0, 9.5, 14.0] {
                let outline = Outline::new(shape, r);
                let mut inside = 0;
                for i in -400..=400 {
                    for j in -400..=400 {
                        let (u, v) = (i as f32 * r / 200.0, j as f32 * r / 200.0);
                        if outline.contains(u, v) {
                            inside += 1;
                            assert!(u.abs() <= outline.reach() && v.abs() <= outline.reach());
                        }
                    }
                }
                assert!(inside > 0, "shape {shape} covers nothing");
            }
        }
    }
}
