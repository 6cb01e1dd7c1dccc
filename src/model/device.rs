//! Where the engine runs: `--device cpu|cuda[:N]|auto` and the inspector's `device`
//! setting, opened into a Candle [`Device`], and what the status bar says of it.
//!
//! CPU and CUDA are separate builds (a CUDA binary needs the CUDA libraries to
//! start): a build without the `cuda` feature asked for a GPU says how to get one,
//! and `auto` in a CUDA build falls back to the CPU with a notice when no GPU
//! answers.

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use candle_core::Device;

/// Which device to run on, as the user names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU, with the hand-written kernels.
    Cpu,
    /// The `N`-th CUDA GPU.
    Cuda(usize),
    /// The first GPU when built with `cuda` and one answers, else the CPU.
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!(
                    "`{s}` is not a device: give cpu, cuda, cuda:N (N counts from 0) or auto"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// An opened device and, when `auto` fell back to the CPU, a one-line notice why.
pub struct Opened {
    /// The device to compute on.
    pub device: Device,
    /// Why `auto` chose the CPU, when a CUDA build found no GPU.
    pub notice: Option<String>,
}

impl DeviceChoice {
    /// Opens the device. A GPU asked for by name that cannot be opened is an error
    /// saying what to do; `auto` falls back to the CPU.
    pub fn open(self) -> Result<Opened> {
        let opened = |device| Opened {
            device,
            notice: None,
        };
        match self {
            Self::Cpu => Ok(opened(Device::Cpu)),
            Self::Cuda(n) => Ok(opened(open_cuda(n)?)),
            Self::Auto if !cfg!(feature = "cuda") => Ok(opened(Device::Cpu)),
            Self::Auto => Ok(match open_cuda(0) {
                Ok(device) => opened(device),
                Err(e) => Opened {
                    device: Device::Cpu,
                    notice: Some(format!(
                        "no GPU answered ({}); running on the CPU",
                        first_line(&e)
                    )),
                },
            }),
        }
    }
}

/// The first line of an error's chain, for one-line notices.
fn first_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    use anyhow::Context as _;
    Device::new_cuda(ordinal).with_context(|| {
        format!(
            "cannot open CUDA device {ordinal} (is there an NVIDIA GPU with a CUDA 13 driver, \
             and are libcudart.so.13, libcublas.so.13 and libcurand.so.10 on \
             LD_LIBRARY_PATH?); --device cpu runs on the CPU"
        )
    })
}

/// The variable NVIDIA's libraries read when they load: `0` keeps cuDNN's float32
/// convolutions in float32. By default cuDNN may run them on TF32 tensor cores (a
/// 10-bit mantissa), which breaks the engine's agreement with the CPU (the tests hold
/// every engine to 1e-4).
pub const TF32_OVERRIDE: &str = "NVIDIA_TF32_OVERRIDE";

/// Sets [`TF32_OVERRIDE`] to `0` unless the user set it. Only builds with the
/// `cudnn` feature convolve with cuDNN; call it before any threads start.
pub fn keep_float32() {
    if cfg!(feature = "cudnn") && std::env::var_os(TF32_OVERRIDE).is_none() {
        // SAFETY: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var(TF32_OVERRIDE, "0") };
    }
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    anyhow::bail!(
        "this unitscope was built without CUDA, so it cannot use cuda:{ordinal}: build it \
         with `scripts/build-cuda.sh` (or `cargo build --release --features cuda` where \
         the CUDA toolkit is installed), or give --device cpu"
    )
}

/// Runs `f` on this thread with the CPU's hand-written kernels switched off, so
/// that every op takes the device-independent Candle path that CUDA runs: how the
/// GPU path's logic (routing, rules, holds, gradients) is checked on a machine
/// without a GPU. Ops reached from other threads are not affected.
pub fn portable_ops<R>(f: impl FnOnce() -> R) -> R {
    super::cpu::portable(f)
}

/// Whether work on `device` goes to hand-written CPU code (the engine's kernels,
/// feature visualization's fused ops and FFT) rather than to Candle's portable ops:
/// on the CPU, outside [`portable_ops`].
pub(crate) fn cpu_kernels(device: &Device) -> bool {
    super::cpu::serves(device)
}

/// A device as the status bar, the Model screen and bench headings name it: `cpu`,
/// `cuda:0 NVIDIA H200`.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let context = d.cuda_stream().context().clone();
            let ordinal = context.ordinal();
            match context.name() {
                Ok(name) => format!("cuda:{ordinal} {name}"),
                Err(_) => format!("cuda:{ordinal}"),
            }
        }
        other => format!("{:?}", other.location()).to_lowercase(),
    }
}

/// The memory in use on a GPU and its total, in bytes (`None` on the CPU, or when
/// the driver does not say).
pub fn memory(device: &Device) -> Option<(u64, u64)> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let (free, total) = d.cuda_stream().context().mem_get_info().ok()?;
            Some(((total - free) as u64, total as u64))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_as_users_write_them() {
        for (text, choice) in [
            ("cpu", DeviceChoice::Cpu),
            ("CPU", DeviceChoice::Cpu),
            ("auto", DeviceChoice::Auto),
            ("cuda", DeviceChoice::Cuda(0)),
            ("gpu", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>(), Ok(choice), "{text}");
        }
        for bad in ["", "cuda:", "cuda:-1", "cuda:x", "tpu", "cuda0"] {
            let e = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(e.contains("give cpu, cuda, cuda:N"), "{bad}: {e}");
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
        assert_eq!(
            "cuda:2".parse::<DeviceChoice>().unwrap().to_string(),
            "cuda:2"
        );
    }

    #[test]
    fn the_cpu_opens_everywhere_and_auto_always_opens_something() {
        assert!(DeviceChoice::Cpu.open().unwrap().device.is_cpu());
        let auto = DeviceChoice::Auto.open().unwrap();
        if auto.device.is_cpu() && cfg!(feature = "cuda") {
            assert!(auto.notice.is_some(), "a CUDA build that fell back says so");
        } else {
            assert!(auto.notice.is_none());
        }
        assert_eq!(describe(&Device::Cpu), "cpu");
        assert_eq!(memory(&Device::Cpu), None);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_cpu_build_asked_for_a_gpu_says_how_to_get_one() {
        let e = DeviceChoice::Cuda(0).open().err().unwrap().to_string();
        assert!(e.contains("built without CUDA"), "{e}");
        assert!(e.contains("scripts/build-cuda.sh"), "{e}");
        assert!(e.contains("--device cpu"), "{e}");
    }
}
