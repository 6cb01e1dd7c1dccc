//! Arrays as a plugin author handles them: float32, row-major, owned.

use crate::Error;

/// A dense float32 array in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    dims: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// `data` in the shape `dims`; an error when they disagree.
    pub fn new(dims: &[usize], data: Vec<f32>) -> Result<Self, Error> {
        let n: usize = dims.iter().product();
        if n != data.len() {
            return Err(Error::new(format!(
                "shape {dims:?} holds {n} values, not {}",
                data.len()
            )));
        }
        Ok(Self {
            dims: dims.to_vec(),
            data,
        })
    }

    /// Zeros in the shape `dims`.
    pub fn zeros(dims: &[usize]) -> Self {
        Self {
            dims: dims.to_vec(),
            data: vec![0.0; dims.iter().product()],
        }
    }

    /// The length of each axis.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The elements.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements, to change in place.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The elements, taken.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Item `i` along the first axis, as a slice: one sample of a batch.
    pub fn item(&self, i: usize) -> &[f32] {
        let size: usize = self.dims[1..].iter().product();
        &self.data[i * size..(i + 1) * size]
    }
}
