//! Buffers handed across the boundary for keeps, and taken back: each side frees
//! what it allocated, through the function pointer the buffer carries. Both host
//! and plugin use these, each with its own copy of this code and so its own
//! allocator.

use crate::abi::{MAX_RANK, UsTensor, UsText};

impl UsText {
    /// `text`, handed over: the receiver frees it with [`UsText::free`].
    pub fn owned(text: impl Into<String>) -> Self {
        let bytes = text.into().into_bytes().into_boxed_slice();
        let len = bytes.len();
        Self {
            ptr: Box::into_raw(bytes).cast::<u8>(),
            len,
            free: Some(free_bytes),
        }
    }

    /// The text, taken back and freed (lossy where it is not UTF-8); `None` when
    /// there is none.
    ///
    /// # Safety
    /// `ptr` points to `len` readable bytes, and `free` (if any) is the function of
    /// the side that allocated them.
    pub unsafe fn take(&mut self) -> Option<String> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: the caller vouches for the bytes.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        let text = String::from_utf8_lossy(bytes).into_owned();
        if let Some(free) = self.free {
            // SAFETY: handed back to the allocator that made it, once.
            unsafe { free(self.ptr, self.len) };
        }
        *self = Self::NONE;
        Some(text)
    }
}

/// Frees text made by [`UsText::owned`].
unsafe extern "C" fn free_bytes(ptr: *mut u8, len: usize) {
    // SAFETY: `ptr` and `len` came from `Box::<[u8]>::into_raw` in `UsText::owned`.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}

impl UsTensor {
    /// `data` in the shape `dims`, handed over: the receiver frees it with
    /// [`UsTensor::free`]. `None` when the shape has too many axes or does not
    /// hold `data.len()` elements.
    pub fn owned(dims: &[usize], data: Vec<f32>) -> Option<Self> {
        let mut tensor = Self::borrowed(dims, &data)?;
        let data = data.into_boxed_slice();
        tensor.data = Box::into_raw(data).cast::<f32>();
        tensor.free = Some(free_floats);
        Some(tensor)
    }

    /// `data` in the shape `dims`, lent for a call; `None` as for [`UsTensor::owned`].
    pub fn borrowed(dims: &[usize], data: &[f32]) -> Option<Self> {
        if dims.len() > MAX_RANK || dims.iter().product::<usize>() != data.len() {
            return None;
        }
        let mut shape = [0; MAX_RANK];
        for (d, &n) in shape.iter_mut().zip(dims) {
            *d = n as u64;
        }
        Some(Self {
            data: data.as_ptr().cast_mut(),
            len: data.len(),
            rank: dims.len() as u32,
            dims: shape,
            free: None,
        })
    }

    /// The shape, checked: at most [`MAX_RANK`] axes whose product is `len`.
    pub fn shape(&self) -> Result<Vec<usize>, String> {
        let rank = self.rank as usize;
        if rank > MAX_RANK {
            return Err(format!("a tensor of rank {rank} (at most {MAX_RANK})"));
        }
        let dims: Vec<usize> = self.dims[..rank].iter().map(|&d| d as usize).collect();
        let product = dims
            .iter()
            .try_fold(1usize, |p, &d| p.checked_mul(d))
            .ok_or("a tensor whose shape overflows")?;
        if product != self.len {
            return Err(format!(
                "a tensor of shape {dims:?} ({product} elements) that says it holds {}",
                self.len
            ));
        }
        if self.data.is_null() && self.len > 0 {
            return Err(format!("a tensor of shape {dims:?} with no data"));
        }
        Ok(dims)
    }

    /// The elements, checked as for [`UsTensor::shape`].
    ///
    /// # Safety
    /// `data` points to `len` readable floats for `'a`.
    pub unsafe fn values<'a>(&self) -> Result<&'a [f32], String> {
        self.shape()?;
        if self.len == 0 {
            return Ok(&[]);
        }
        // SAFETY: the caller vouches for the floats; the length is checked above.
        Ok(unsafe { std::slice::from_raw_parts(self.data, self.len) })
    }

    /// Frees the data if it was handed over, and empties the tensor.
    ///
    /// # Safety
    /// `free` (if any) is the function of the side that allocated `data`.
    pub unsafe fn release(&mut self) {
        if let Some(free) = self.free
            && !self.data.is_null()
        {
            // SAFETY: handed back to the allocator that made it, once.
            unsafe { free(self.data, self.len) };
        }
        *self = Self::EMPTY;
    }
}

/// Frees floats handed over by [`UsTensor::owned`].
unsafe extern "C" fn free_floats(data: *mut f32, len: usize) {
    // SAFETY: `data` and `len` came from `Box::<[f32]>::into_raw` in `UsTensor::owned`.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
}
