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
            // Every vertex lies within `r`: a point well past it is outside, and
            // spared the edges' divisions (most of a rotated object's square).
            Form::Polygon(_) if d2 > 1.001 * r * r => false,
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
/// bright phase. Patterns are laid in image coordinates, and repeat every period
/// along both axes: each pixel looks its phase up in one period's cells, where
/// computing it would divide by the half period (a division per pixel).
pub struct Pattern {
    period: usize,
    phase: usize,
    /// Per image column, its place in the period.
    columns: Vec<u8>,
    /// `period x period` cells, row-major: whether each is bright.
    cells: Vec<bool>,
}

#[derive(Clone, Copy)]
enum Kind {
    Solid,
    StripesHorizontal,
    StripesVertical,
    Checker,
    Dots,
}

impl Kind {
    fn of(texture: usize) -> Self {
        match super::catalogue::TEXTURES[texture] {
            "solid" => Kind::Solid,
            "stripes-horizontal" => Kind::StripesHorizontal,
            "stripes-vertical" => Kind::StripesVertical,
            "checker" => Kind::Checker,
            "dots" => Kind::Dots,
            other => unreachable!("texture {other} has no pattern"),
        }
    }
}

impl Pattern {
    /// The pattern over images `width` pixels wide.
    pub fn new(texture: usize, period: usize, phase: usize, width: usize) -> Self {
        let kind = Kind::of(texture);
        let cells = (0..period * period)
            .map(|i| bright(kind, period, i % period, i / period))
            .collect();
        Self {
            period,
            phase,
            columns: (0..width).map(|x| ((x + phase) % period) as u8).collect(),
            cells,
        }
    }

    /// Row `y`'s brightness, to be read by column with [`PatternRow::bright`].
    pub fn row(&self, y: usize) -> PatternRow<'_> {
        let start = (y + self.phase) % self.period * self.period;
        PatternRow {
            columns: &self.columns,
            cells: &self.cells[start..start + self.period],
        }
    }
}

/// One image row of a [`Pattern`].
pub struct PatternRow<'a> {
    columns: &'a [u8],
    cells: &'a [bool],
}

impl PatternRow<'_> {
    /// Whether column `x` of the row is in the bright phase.
    pub fn bright(&self, x: usize) -> bool {
        self.cells[self.columns[x] as usize]
    }
}

/// Whether the pattern of `kind` with `period` is bright at `(px, py)`: the image
/// pixel moved by the phase (`period` is even).
fn bright(kind: Kind, period: usize, px: usize, py: usize) -> bool {
    let half = period / 2;
    match kind {
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

    /// A polygon's edges put no point past its circumradius inside: the test
    /// that skips them there answers as they would.
    #[test]
    fn no_polygon_reaches_past_its_circumradius() {
        for (n, inner) in [(3, 1.0), (6, 1.0), (5, 0.45)] {
            for r in [6.0f32, 9.5, 22.0] {
                let vertices = regular(n, r, inner);
                for step in 0..3600 {
                    let angle = step as f32 * std::f32::consts::TAU / 3600.0;
                    let d = r * 1.0001f32.sqrt();
                    let (u, v) = (d * angle.cos(), d * angle.sin());
                    assert!(
                        !in_polygon(u, v, &vertices),
                        "{n} points, r {r}, ({u}, {v})"
                    );
                }
            }
        }
    }

    /// A pattern's cells give every image pixel the brightness its formula does,
    /// at every period and phase the world draws.
    #[test]
    fn patterns_repeat_every_period() {
        for texture in 0..super::super::catalogue::TEXTURES.len() {
            for period in [6, 8] {
                for phase in 0..period {
                    let pattern = Pattern::new(texture, period, phase, 64);
                    let kind = Kind::of(texture);
                    for y in 0..64 {
                        let row = pattern.row(y);
                        for x in 0..64 {
                            assert_eq!(
                                row.bright(x),
                                bright(kind, period, x + phase, y + phase),
                                "texture {texture}, period {period}, phase {phase}, ({x}, {y})"
                            );
                        }
                    }
                }
            }
        }
    }
}
