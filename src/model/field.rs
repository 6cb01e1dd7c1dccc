//! Receptive fields: which input pixels a unit at a layer position can see, from the
//! layer geometry (kernels, strides, paddings) the forward pass went through.
//!
//! Each layer's field is three numbers per axis, composed layer by layer as in
//! Araujo, Norris & Sim 2019, "Computing Receptive Fields of Convolutional Neural
//! Networks" (Distill), eqs. 1-2, for a layer of kernel `k`, stride `s` and padding
//! `p` before the input:
//!
//! - size: `r_out = r_in + (k - 1) * j_in`
//! - jump (input pixels between neighbouring positions): `j_out = j_in * s`
//! - centre of position 0: `c_out = c_in + ((k - 1) / 2 - p) * j_in`
//!
//! Where branches meet (a residual sum) the field is the union of theirs. This is
//! the theoretical field: every pixel that can reach the unit, whatever the weights.

use serde::{Deserialize, Serialize};

/// The receptive field of a layer's positions, in input pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceptiveField {
    /// Side of a position's field `(rows, columns)`.
    pub size: (usize, usize),
    /// Input pixels between neighbouring positions `(rows, columns)`.
    pub jump: (usize, usize),
    /// Centre of position `(0, 0)`'s field, `(y, x)`, in pixel coordinates (pixel
    /// `i` covers `[i, i + 1)`, so the input's own pixel 0 is centred at 0.5); it may
    /// lie outside the input, in the padding.
    pub centre: (f64, f64),
}

/// One axis of a layer: kernel, stride, and padding before the first pixel.
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    /// The window's side.
    pub kernel: usize,
    /// Pixels between windows.
    pub stride: usize,
    /// Padding before the first pixel (TensorFlow's "SAME" pads less before than
    /// after).
    pub padding: usize,
}

impl ReceptiveField {
    /// The input itself: every position sees its own pixel.
    pub const INPUT: Self = Self {
        size: (1, 1),
        jump: (1, 1),
        centre: (0.5, 0.5),
    };

    /// The field after a window op (convolution, pooling) with geometry `(rows,
    /// columns)` reads a layer whose field is `self`.
    pub fn then(self, (rows, columns): (Axis, Axis)) -> Self {
        let axis = |size: usize, jump: usize, centre: f64, a: Axis| {
            let reach = a.kernel.saturating_sub(1);
            let centre = centre + (reach as f64 / 2.0 - a.padding as f64) * jump as f64;
            (size + reach * jump, jump * a.stride, centre)
        };
        let (sy, jy, cy) = axis(self.size.0, self.jump.0, self.centre.0, rows);
        let (sx, jx, cx) = axis(self.size.1, self.jump.1, self.centre.1, columns);
        Self {
            size: (sy, sx),
            jump: (jy, jx),
            centre: (cy, cx),
        }
    }

    /// The field of a sum of two layers' positions: the span of both fields (their
    /// jumps agree when their maps do; the coarser one is kept otherwise).
    pub fn union(self, other: Self) -> Self {
        let axis = |(sa, ja, ca): (usize, usize, f64), (sb, jb, cb): (usize, usize, f64)| {
            let lo = (ca - sa as f64 / 2.0).min(cb - sb as f64 / 2.0);
            let hi = (ca + sa as f64 / 2.0).max(cb + sb as f64 / 2.0);
            ((hi - lo).round() as usize, ja.max(jb), (lo + hi) / 2.0)
        };
        let (sy, jy, cy) = axis(
            (self.size.0, self.jump.0, self.centre.0),
            (other.size.0, other.jump.0, other.centre.0),
        );
        let (sx, jx, cx) = axis(
            (self.size.1, self.jump.1, self.centre.1),
            (other.size.1, other.jump.1, other.centre.1),
        );
        Self {
            size: (sy, sx),
            jump: (jy, jx),
            centre: (cy, cx),
        }
    }

    /// The input pixels position `(y, x)` sees, clipped to an input of `(rows,
    /// columns)`: `(top, left, bottom, right)`, bottom and right exclusive.
    pub fn window(&self, (y, x): (usize, usize), (rows, columns): (usize, usize)) -> [usize; 4] {
        let span = |centre: f64, jump: usize, size: usize, at: usize, limit: usize| {
            let c = centre + (at * jump) as f64;
            let lo = (c - size as f64 / 2.0).round().clamp(0.0, limit as f64) as usize;
            let hi = (c + size as f64 / 2.0).round().clamp(0.0, limit as f64) as usize;
            (lo, hi.max(lo + 1).min(limit.max(1)))
        };
        let (top, bottom) = span(self.centre.0, self.jump.0, self.size.0, y, rows);
        let (left, right) = span(self.centre.1, self.jump.1, self.size.1, x, columns);
        [top, left, bottom, right]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(kernel: usize, stride: usize, padding: usize) -> (Axis, Axis) {
        let a = Axis {
            kernel,
            stride,
            padding,
        };
        (a, a)
    }

    /// AlexNet's conv1..pool5, whose fields Araujo et al. tabulate: conv1 11 px,
    /// pool1 19, conv2 51, pool2 67, conv3 99, conv4 131, conv5 163, pool5 195.
    #[test]
    fn alexnet_fields_match_the_published_table() {
        let layers = [
            (square(11, 4, 2), 11),
            (square(3, 2, 0), 19),
            (square(5, 1, 2), 51),
            (square(3, 2, 0), 67),
            (square(3, 1, 1), 99),
            (square(3, 1, 1), 131),
            (square(3, 1, 1), 163),
            (square(3, 2, 0), 195),
        ];
        let mut field = ReceptiveField::INPUT;
        for (geometry, size) in layers {
            field = field.then(geometry);
            assert_eq!(field.size, (size, size));
        }
        assert_eq!(field.jump, (32, 32));
    }

    /// ResNet-18 at 224 px, as the forward pass finds it: the stem 7 px every 2,
    /// then 11 after the pool, and 43, 99, 211, 435 px (jumps 4, 8, 16, 32) after the
    /// four stages, the residual shortcuts inside the 3x3 branches.
    #[test]
    fn resnet18_fields_follow_its_layers() {
        use crate::model::{Architecture, Model};
        let model = Model::synthetic(Architecture::Resnet18, &candle_core::Device::Cpu).unwrap();
        let layers = model.layers().unwrap();
        let field = |name: &str| {
            let layer = layers.iter().find(|l| l.name == name).unwrap();
            layer.field.map(|f| (f.size.0, f.jump.0, f.centre.0))
        };
        assert_eq!(field("conv1"), Some((7, 2, 0.5)));
        assert_eq!(field("maxpool"), Some((11, 4, 0.5)));
        assert_eq!(field("layer1"), Some((43, 4, 0.5)));
        assert_eq!(field("layer2.0.conv1"), Some((51, 8, 0.5)));
        assert_eq!(field("layer2"), Some((99, 8, 0.5)));
        assert_eq!(field("layer3"), Some((211, 16, 0.5)));
        assert_eq!(field("layer4"), Some((435, 32, 0.5)));
        assert_eq!(field("avgpool"), None, "pooled over the whole input");
        assert!(
            layers
                .iter()
                .filter(|l| l.shape.len() == 3 && l.name != "avgpool")
                .all(|l| l.field.is_some()),
            "a trunk layer without a field"
        );
    }

    /// A 3x3 convolution with padding 1 centres position 0 on pixel 0; its window
    /// there is clipped by the image edge; a stride-2 layer above doubles the jump.
    #[test]
    fn windows_are_placed_and_clipped() {
        let f = ReceptiveField::INPUT.then(square(3, 1, 1));
        assert_eq!(f.centre, (0.5, 0.5));
        assert_eq!(f.window((0, 0), (8, 8)), [0, 0, 2, 2]);
        assert_eq!(f.window((3, 5), (8, 8)), [2, 4, 5, 7]);
        let g = f.then(square(2, 2, 0));
        assert_eq!((g.size, g.jump, g.centre), ((4, 4), (2, 2), (1.0, 1.0)));
        assert_eq!(g.window((1, 1), (8, 8)), [1, 1, 5, 5]);
        let both = g.union(ReceptiveField::INPUT.then(square(1, 2, 0)));
        assert_eq!(both, g, "a 1x1 shortcut lies inside the 3x3 branch");
    }
}
