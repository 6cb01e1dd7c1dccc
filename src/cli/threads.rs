//! The binary's setting for Candle's own CPU thread pool.
//!
//! Candle 0.11 runs elementwise operations above 64K elements (residual additions,
//! the gradient sums of backpropagation) on a private pool whose worker spins for
//! 25,000 pause instructions after each one before it sleeps. Our kernels keep both
//! cores busy through rayon, so that spinning worker takes a core from them after
//! every such operation. Letting it sleep at once: ResNet-18 forward + gradient at
//! batch 1, best of 15, 66-70 -> 57-58 ms, EfficientNet-Lite0 58-62 -> 51-54 ms (five
//! alternating in-process runs each); forwards within noise. A spin limit the user
//! set is kept.

/// The environment variable Candle reads once, when its pool starts.
const SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// Makes Candle's pool worker sleep as soon as it runs out of work. Call before any
/// threads start.
pub fn sleep_idle_candle_workers() {
    if std::env::var_os(SPIN_LIMIT).is_none() {
        // SAFETY: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var(SPIN_LIMIT, "0") };
    }
}
