//! The binary's malloc policy (glibc on Linux; elsewhere these do nothing).
//!
//! A forward + backward pass allocates and frees activation-sized buffers over and
//! over. glibc returns blocks above its mmap threshold to the kernel at once and
//! trims the heap top past 128 KB, so the next pass maps fresh pages: a page fault and
//! a zeroed 4 KB page each (15% of an EfficientNet-Lite0 batch-16 gradient profile).
//! Keeping freed blocks up to 32 MB (glibc's largest threshold) for reuse: that
//! forward + gradient 1402 / 1155 -> 948 / 962 ms, at batch 1 95 / 94 -> 50 / 52 ms
//! (`unitscope bench engine`, two alternating runs of both builds; ResNet-18 and
//! VGG-11 within noise), for 50-100 MB more peak RSS at batch 16.

/// Keeps freed blocks of up to 32 MB in the heap for reuse, and up to 256 MB of free
/// heap top before trimming. Call before any threads start.
pub fn keep_freed_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Returns the free heap to the kernel, so that a following peak-RSS reading counts
/// what the measured work holds, not what earlier work left for reuse.
pub fn release_freed_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
