//! The demo concept world: procedural 64x64 images of one to three objects, each with
//! a shape, a color and a texture drawn independently, on a grey background, with a
//! pixel-exact mask for every concept (see [`catalogue`]).
//!
//! The image class is the shape of the object with the largest visible area: one
//! large object, up to two small ones that may overlap its edge. Every pixel belongs
//! either to the background (exactly one background concept) or to one visible object
//! (exactly one shape, one color and one texture concept): shape and background masks
//! partition the image, and color masks, like texture masks, partition the objects.
//!
//! 64 px keeps the demo model trainable on two CPU cores in minutes while the
//! smallest object (radius 6) and the finest texture (3 px stripes) stay several
//! pixels wide. Sample `i` of seed `s` is a pure function of `(s, i)`.

pub mod catalogue;
mod shape;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use catalogue::{BACKGROUNDS, COLORS, Category, Concept, SHADE, SHAPES, TEXTURES};

/// Side of every image, in pixels.
pub const SIZE: usize = 64;

/// Held-out samples start at this index, far past any training run.
pub const HELD_OUT: u64 = 1 << 40;

/// An object as drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Index into [`SHAPES`].
    pub shape: usize,
    /// Index into [`COLORS`].
    pub color: usize,
    /// Index into [`TEXTURES`].
    pub texture: usize,
    /// Center, in pixels.
    pub center: (f32, f32),
    /// Circumradius, in pixels.
    pub radius: f32,
    /// Rotation, radians.
    pub rotation: f32,
    /// Texture period (pixels) and phase.
    pub period: usize,
    phase: usize,
}

/// One rendered image with its ground truth.
#[derive(Clone, Debug)]
pub struct Scene {
    /// The RGB image, [`SIZE`] x [`SIZE`].
    pub image: RgbImage,
    /// Objects in drawing order (later ones on top).
    pub objects: Vec<Object>,
    /// Index into [`BACKGROUNDS`].
    pub background: usize,
    /// Per pixel (row-major): 0 for background, `k + 1` for `objects[k]`.
    pub owner: Vec<u8>,
    /// The class: the shape of the largest visible object.
    pub class: usize,
    /// That object, an index into `objects`.
    pub subject: usize,
}

/// The world: a seed. Scenes are drawn by index.
#[derive(Clone, Copy, Debug)]
pub struct World {
    seed: u64,
}

impl World {
    /// The world of `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Scene `index`. Indices from [`HELD_OUT`] on are reserved for evaluation.
    pub fn scene(&self, index: u64) -> Scene {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&index.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        let background = rng.random_range(0..BACKGROUNDS.len());
        let mut image = draw_background(background, &mut rng);
        let objects = place_objects(&mut rng);
        let mut owner = vec![0u8; SIZE * SIZE];
        // Each owner's visible pixels, kept as objects cover each other.
        let mut area = vec![0usize; objects.len() + 1];
        area[0] = SIZE * SIZE;
        let pixels: &mut [u8] = &mut image;
        for (k, o) in objects.iter().enumerate() {
            let base = COLORS[o.color].1;
            // The texture's two phases, shaded once per object.
            let (bright, dark) = (shade(base, 1.0), shade(base, SHADE));
            let pattern = shape::Pattern::new(o.texture, o.period, o.phase, SIZE);
            let (sin, cos) = o.rotation.sin_cos();
            let outline = shape::Outline::new(o.shape, o.radius);
            // Rotated by θ, the outline's square of reach spans (|cos θ| + |sin θ|)
            // times its reach along each axis (at most √2 times).
            let reach = (cos.abs() + sin.abs()) * outline.reach();
            for y in span(o.center.1, reach) {
                let pattern = pattern.row(y);
                for x in span(o.center.0, reach) {
                    let (dx, dy) = (x as f32 + 0.5 - o.center.0, y as f32 + 0.5 - o.center.1);
                    let (u, v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
                    if !outline.contains(u, v) {
                        continue;
                    }
                    let p = y * SIZE + x;
                    area[owner[p] as usize] -= 1;
                    area[k + 1] += 1;
                    owner[p] = k as u8 + 1;
                    let colour = if pattern.bright(x) { bright } else { dark };
                    pixels[3 * p..3 * p + 3].copy_from_slice(&colour);
                }
            }
        }
        let largest = (1..=objects.len())
            .max_by_key(|&k| (area[k], std::cmp::Reverse(k)))
            .unwrap_or(1);
        let class = objects[largest - 1].shape;
        Scene {
            image,
            objects,
            background,
            owner,
            class,
            subject: largest - 1,
        }
    }
}

/// The pixels whose centres lie within `reach` of `center` along one axis, and a
/// pixel more each side against rounding.
fn span(center: f32, reach: f32) -> std::ops::Range<usize> {
    let first = (center - reach - 0.5).floor() - 1.0;
    let last = (center + reach - 0.5).floor() + 1.0;
    first.max(0.0) as usize..(last + 1.0).clamp(0.0, SIZE as f32) as usize
}

/// An object color at brightness `level`, as stored in images.
pub fn shade(base: [u8; 3], level: f32) -> [u8; 3] {
    base.map(|c| (c as f32 * level).round() as u8)
}

impl Scene {
    /// The class name.
    pub fn class_name(&self) -> &'static str {
        SHAPES[self.class]
    }

    /// The visible pixels of the object that sets the class, row-major.
    pub fn subject_mask(&self) -> Vec<bool> {
        self.owner
            .iter()
            .map(|&k| k as usize == self.subject + 1)
            .collect()
    }

    /// The pixels of `concept`, row-major.
    pub fn mask(&self, concept: Concept) -> Vec<bool> {
        let of_object = |k: u8| -> Option<usize> {
            let o = &self.objects[k as usize - 1];
            Some(match concept.category {
                Category::Shape => o.shape,
                Category::Color => o.color,
                Category::Texture => o.texture,
                Category::Background => return None,
            })
        };
        self.owner
            .iter()
            .map(|&k| match (k, concept.category) {
                (0, Category::Background) => self.background == concept.index,
                (0, _) => false,
                (k, _) => of_object(k) == Some(concept.index),
            })
            .collect()
    }

    /// The concepts with at least one visible pixel, in catalogue order.
    pub fn concepts(&self) -> Vec<Concept> {
        Concept::all()
            .filter(|&c| self.mask(c).iter().any(|&m| m))
            .collect()
    }
}

fn draw_background(kind: usize, rng: &mut ChaCha8Rng) -> RgbImage {
    let grey = |g: i32| Rgb([g.clamp(0, 255) as u8; 3]);
    let g: i32 = rng.random_range(60..=190);
    match BACKGROUNDS[kind] {
        "plain" => RgbImage::from_pixel(SIZE as u32, SIZE as u32, grey(g)),
        "noise" => RgbImage::from_fn(SIZE as u32, SIZE as u32, |_, _| {
            grey(g + rng.random_range(-30..=30))
        }),
        "gradient" => {
            let (top, bottom) = (rng.random_range(30..=110), rng.random_range(150..=230));
            let (top, bottom) = if rng.random_bool(0.5) {
                (top, bottom)
            } else {
                (bottom, top)
            };
            RgbImage::from_fn(SIZE as u32, SIZE as u32, |_, y| {
                grey(top + (bottom - top) * y as i32 / (SIZE as i32 - 1))
            })
        }
        "grid" => {
            let spacing = rng.random_range(6..=10);
            let line = if g > 125 { g - 60 } else { g + 60 };
            // Laid once per coordinate, not divided out at every pixel.
            let on_line: Vec<bool> = (0..SIZE as u32).map(|i| i % spacing == 0).collect();
            RgbImage::from_fn(SIZE as u32, SIZE as u32, |x, y| {
                grey(if on_line[x as usize] || on_line[y as usize] {
                    line
                } else {
                    g
                })
            })
        }
        other => unreachable!("background {other} has no painter"),
    }
}

fn random_object(rng: &mut ChaCha8Rng, radius: f32, center: (f32, f32)) -> Object {
    let period = *[6usize, 8].get(rng.random_range(0..2)).unwrap_or(&6);
    Object {
        shape: rng.random_range(0..SHAPES.len()),
        color: rng.random_range(0..COLORS.len()),
        texture: rng.random_range(0..TEXTURES.len()),
        center,
        radius,
        rotation: rng.random_range(-0.26f32..=0.26),
        period,
        phase: rng.random_range(0..period),
    }
}

/// One large object, then up to two small ones centered outside it (they may
/// overlap its edge, never cover its middle).
fn place_objects(rng: &mut ChaCha8Rng) -> Vec<Object> {
    let s = SIZE as f32;
    let r = rng.random_range(14.0f32..=22.0);
    let margin = 0.8 * r;
    let main_center = (
        rng.random_range(margin..=s - margin),
        rng.random_range(margin..=s - margin),
    );
    let mut objects = vec![random_object(rng, r, main_center)];
    for _ in 0..rng.random_range(0..=2) {
        let small = rng.random_range(6.0f32..=10.0);
        for _attempt in 0..20 {
            let c = (
                rng.random_range(4.0..=s - 4.0),
                rng.random_range(4.0..=s - 4.0),
            );
            let (dx, dy) = (c.0 - main_center.0, c.1 - main_center.1);
            if (dx * dx + dy * dy).sqrt() >= r {
                objects.push(random_object(rng, small, c));
                break;
            }
        }
    }
    objects
}
