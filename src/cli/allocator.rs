//! The binary's memory policy: [`Recycling`], its global allocator, on every
//! platform; glibc's settings on Linux (elsewhere those functions do nothing).
//!
//! A forward + backward pass allocates and frees activation-sized buffers over and
//! over. glibc returns blocks above its mmap threshold to the kernel at once and
//! trims the heap top past 128 KB, so the next pass maps fresh pages: a page fault and
//! a zeroed 4 KB page each (15% of an EfficientNet-Lite0 batch-16 gradient profile).
//! Keeping freed blocks up to 32 MB (glibc's largest threshold) for reuse: that
//! forward + gradient 1402 / 1155 -> 948 / 962 ms, at batch 1 95 / 94 -> 50 / 52 ms
//! (`unitscope bench engine`, two alternating runs of both builds; ResNet-18 and
//! VGG-11 within noise), for 50-100 MB more peak RSS at batch 16.
//!
//! Blocks above that threshold still went back to the kernel on free; [`Recycling`]
//! keeps those (and every block of 1 MB or more) itself.
//!
//! The pages themselves: glibc can ask the kernel for transparent huge pages (2 MB)
//! for its heap and its mapped blocks (`glibc.malloc.hugetlb=1`), 512 times fewer
//! page faults and TLB entries for activation-sized buffers. The tunable is read when
//! the process starts, so the binary re-executes itself once with it set.

use std::alloc::{GlobalAlloc, Layout, System};
#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::os::unix::process::CommandExt;
use std::sync::Mutex;

/// Re-executes the binary with glibc's huge-page tunable on, unless `GLIBC_TUNABLES`
/// already mentions it (the user's choice, or this process is the re-execution).
/// Returns only when it did not re-execute. Call first, before any threads start.
/// (EfficientNet-Lite0 forward + gradient at batch 16, three alternating runs of the
/// same binary with the tunable set or not: 893-1017 -> 671-838 ms.)
pub fn use_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const TUNABLE: &str = "glibc.malloc.hugetlb";
        let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if current.contains(TUNABLE) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let value = match current.as_str() {
            "" => format!("{TUNABLE}=1"),
            other => format!("{other}:{TUNABLE}=1"),
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        // exec returns only on failure; then run on without huge pages.
        let _ = std::process::Command::new(&exe)
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", value)
            .exec();
    }
}

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

/// Returns the blocks [`Recycling`] keeps and the free heap to the kernel, so that a
/// following peak-RSS reading counts what the measured work holds, not what earlier
/// work left for reuse.
pub fn release_freed_blocks() {
    kept().release();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Freed blocks this size and larger are kept for reuse by [`Recycling`].
const RECYCLED_MIN_BYTES: usize = 1 << 20;
/// At most this many freed bytes are kept; beyond it the oldest go back to malloc.
const RECYCLED_MAX_BYTES: usize = 2 << 30;
/// At most this many freed blocks are kept (a ResNet-18 pass frees about 200 of them).
const RECYCLED_MAX_BLOCKS: usize = 1024;

/// The global allocator: malloc, except that freed blocks of 1 MB and more are kept
/// and handed out again for an allocation of the same size and alignment.
///
/// Each forward + backward pass allocates the same activation- and gradient-sized
/// buffers as the last one. glibc hands blocks above its mmap threshold (32 MB at
/// most) back to the kernel on free, so the next pass takes a page fault and a zeroed
/// page for every 4 KB (or 2 MB) of them again: after the settings above, still about
/// 20% of an EfficientNet-Lite0 batch-16 gradient profile in `clear_page_erms`. Kept
/// blocks stay mapped, so a steady state of repeated passes takes no page faults.
/// Sizes repeat exactly between passes of one shape; a changed shape pushes the old
/// sizes out oldest first.
pub struct Recycling;

#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    size: usize,
    align: usize,
}

/// Kept blocks, oldest first.
struct Kept {
    blocks: [Block; RECYCLED_MAX_BLOCKS],
    len: usize,
    bytes: usize,
}

static KEPT: Mutex<Kept> = Mutex::new(Kept {
    blocks: [Block {
        ptr: 0,
        size: 0,
        align: 0,
    }; RECYCLED_MAX_BLOCKS],
    len: 0,
    bytes: 0,
});

fn kept() -> std::sync::MutexGuard<'static, Kept> {
    // No code that holds the lock can panic; a poisoned lock still holds valid blocks.
    KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Kept {
    /// The newest kept block of exactly this layout, removed from the list.
    fn take(&mut self, layout: Layout) -> Option<*mut u8> {
        let i = (0..self.len).rev().find(|&i| {
            let b = self.blocks[i];
            b.size == layout.size() && b.align == layout.align()
        })?;
        let block = self.blocks[i];
        self.blocks.copy_within(i + 1..self.len, i);
        self.len -= 1;
        self.bytes -= block.size;
        Some(block.ptr as *mut u8)
    }

    /// Keeps a block, first handing the oldest back to malloc while it would not fit.
    fn keep(&mut self, ptr: *mut u8, layout: Layout) {
        while self.len > 0
            && (self.len == RECYCLED_MAX_BLOCKS || self.bytes + layout.size() > RECYCLED_MAX_BYTES)
        {
            let oldest = self.blocks[0];
            self.blocks.copy_within(1..self.len, 0);
            self.len -= 1;
            self.bytes -= oldest.size;
            // SAFETY: the block came from System with this layout and is no longer in use.
            unsafe { System.dealloc(oldest.ptr as *mut u8, block_layout(oldest)) };
        }
        self.blocks[self.len] = Block {
            ptr: ptr as usize,
            size: layout.size(),
            align: layout.align(),
        };
        self.len += 1;
        self.bytes += layout.size();
    }

    /// Hands every kept block back to malloc.
    fn release(&mut self) {
        for block in &self.blocks[..self.len] {
            // SAFETY: as in `keep`.
            unsafe { System.dealloc(block.ptr as *mut u8, block_layout(*block)) };
        }
        self.len = 0;
        self.bytes = 0;
    }
}

fn block_layout(block: Block) -> Layout {
    // SAFETY: size and alignment were those of a valid Layout when the block was kept.
    unsafe { Layout::from_size_align_unchecked(block.size, block.align) }
}

fn recycled(layout: Layout) -> bool {
    layout.size() >= RECYCLED_MIN_BYTES && layout.size() <= RECYCLED_MAX_BYTES
}

// SAFETY: every block handed out is either fresh from System or a System block of the
// same layout that was freed and not handed out since; `realloc` is System's, which
// is valid for any System block.
unsafe impl GlobalAlloc for Recycling {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if recycled(layout)
            && let Some(ptr) = kept().take(layout)
        {
            return ptr;
        }
        // SAFETY: the caller's layout contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if recycled(layout)
            && let Some(ptr) = kept().take(layout)
        {
            // SAFETY: the block holds layout.size() writable bytes.
            unsafe { ptr.write_bytes(0, layout.size()) };
            return ptr;
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if recycled(layout) {
            kept().keep(ptr, layout);
        } else {
            // SAFETY: as in `alloc`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc`; every block is a System block.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
