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
//!
//! The pages themselves: glibc can ask the kernel for transparent huge pages (2 MB)
//! for its heap and its mapped blocks (`glibc.malloc.hugetlb=1`), 512 times fewer
//! page faults and TLB entries for activation-sized buffers. The tunable is read when
//! the process starts, so the binary re-executes itself once with it set.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::os::unix::process::CommandExt;

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

/// Returns the free heap to the kernel, so that a following peak-RSS reading counts
/// what the measured work holds, not what earlier work left for reuse.
pub fn release_freed_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
