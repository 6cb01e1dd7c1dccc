//! Which pixels a shape covers, and which a texture darkens.

/// Shape `shape` of circumradius `r`, ready to test points against: the shape is
/// looked up and a polygon's vertices are laid once, not for every pixel.
pub struct Outline {
    form: Form,
    r: f32,
}

enum Form {
    Circle,
    Ring,
    Square,
    Diamond,
    Cross,
    /// A triangle, hexagon or star, by its vertices.
    Polygon(Vec<(f32, f32)>),
}

impl Outline {
    pub fn new(shape: usize, r: f32) -> Self {
        let form = match super::catalogue::SHAPES[shape] {
            "circle" => Form::Circle,
            "ring" => Form::Ring,
            "square" => Form::Square,
            "diamond" => Form::Diamond,
            "cross" => Form::Cross,
            "triangle" => Form::Polygon(regular(3, r, 1.0)),
            "hexagon" => Form::Polygon(regular(6, r, 1.0)),
            "star" => Form::Polygon(regular(5, r, 0.45)),
            other => unreachable!("shape {other} has no outline"),
        };
        Self { form, r }
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
        match &self.form {
            Form::Circle => d2 <= r * r,
            Form::Ring => d2 <= r * r && d2 >= (0.55 * r) * (0.55 * r),
            Form::Square => u.abs() <= 0.75 * r && v.abs() <= 0.75 * r,
            Form::Diamond => u.abs() + v.abs() <= r,
            Form::Cross => {
                let (a, b) = (u.abs(), v.abs());
                (a <= 0.3 * r && b <= r) || (b <= 0.3 * r && a <= r)
            }
            Form::Polygon(vertices) => in_polygon(u, v, vertices),
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

/// Texture `texture` with its period and phase: which image pixels are in its
/// bright phase. Patterns are laid in image coordinates.
pub struct Pattern {
    kind: Kind,
    period: usize,
    phase: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Solid,
    StripesHorizontal,
    StripesVertical,
    Checker,
    Dots,
}

impl Pattern {
    pub fn new(texture: usize, period: usize, phase: usize) -> Self {
        let kind = match super::catalogue::TEXTURES[texture] {
            "solid" => Kind::Solid,
            "stripes-horizontal" => Kind::StripesHorizontal,
            "stripes-vertical" => Kind::StripesVertical,
            "checker" => Kind::Checker,
            "dots" => Kind::Dots,
            other => unreachable!("texture {other} has no pattern"),
        };
        Self {
            kind,
            period,
            phase,
        }
    }

    /// Whether pixel `(x, y)` is in the bright phase.
    pub fn bright(&self, x: usize, y: usize) -> bool {
        let (period, half) = (self.period, self.period / 2);
        let (px, py) = (x + self.phase, y + self.phase);
        match self.kind {
            Kind::Solid => true,
            Kind::StripesHorizontal => (py / half).is_multiple_of(2),
            Kind::StripesVertical => (px / half).is_multiple_of(2),
            Kind::Checker => (px / half + py / half).is_multiple_of(2),
            Kind::Dots => {
                let (dx, dy) = (
                    (px % period) as f32 - half as f32,
                    (py % period) as f32 - half as f32,
                );
                dx * dx + dy * dy > (0.3 * period as f32).powi(2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenes draw each object only within the square of its reach, rotated, so no
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
