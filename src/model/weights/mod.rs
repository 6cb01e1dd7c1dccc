//! Weight files, read as data and checked against an architecture.
//!
//! [`Weights`] holds every tensor of a file by its PyTorch name. Architectures take
//! tensors out with [`WeightPath::get`], which names the tensor and the shape it
//! expected on any mismatch; [`Weights::finish`] then reports tensors nobody took, so
//! a checkpoint for a different model fails loudly instead of half-loading.

mod pickle;
mod pth;
pub mod synthetic;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Device, Tensor, Var};

use crate::limits::Limits;

/// The two kinds of weight files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.safetensors`.
    Safetensors,
    /// A PyTorch checkpoint, zip or legacy format (any other extension).
    Pth,
}

impl Format {
    /// The format a file's extension says.
    pub fn of(path: &Path) -> Self {
        match path.extension().is_some_and(|e| e == "safetensors") {
            true => Self::Safetensors,
            false => Self::Pth,
        }
    }
}

/// The float tensors of a safetensors file. Integer buffers no forward pass reads are
/// dropped; other non-float tensors, and element types Candle cannot convert, are
/// errors that name the type.
fn read_safetensors(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    use safetensors::Dtype as St;
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("not a valid safetensors file, corrupt or truncated ({e})"))?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let dtype = match view.dtype() {
            St::F64 => DType::F64,
            St::F32 => DType::F32,
            St::F16 => DType::F16,
            St::BF16 => DType::BF16,
            _ if pth::is_ignored(&name) => continue,
            St::BOOL
            | St::U8
            | St::I8
            | St::I16
            | St::U16
            | St::I32
            | St::U32
            | St::I64
            | St::U64 => {
                bail!(
                    "tensor `{name}` holds {:?} values; unitscope reads float weights (F16, BF16, \
                     F32, F64): save the model's parameters as floats",
                    view.dtype()
                )
            }
            other => bail!(
                "tensor `{name}` has element type {other:?}, which unitscope does not read; \
                 convert the weights to F16, BF16 or F32"
            ),
        };
        // Widened one tensor at a time, so a half-precision copy never outlives its
        // tensor: the peak is the file and its weights in f32.
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)?
            .to_dtype(DType::F32)?;
        tensors.push((name, t));
    }
    Ok(tensors)
}

/// The tensors of a weights file, addressed by PyTorch parameter name.
pub struct Weights {
    tensors: BTreeMap<String, Tensor>,
    taken: Mutex<BTreeSet<String>>,
    /// Every tensor handed out, in the order the architecture asked for them.
    handed: Mutex<Vec<(String, Tensor)>>,
    device: Device,
    /// The element type handed out (f32 unless [`Weights::with_dtype`]).
    dtype: DType,
    /// Where tensors the file lacks come from.
    fallback: Fallback,
}

/// What [`Weights`] does when asked for a tensor it does not hold.
enum Fallback {
    /// Fail, naming the tensor.
    Missing,
    /// Generate it in closed form ([`synthetic`]).
    Synthetic,
    /// Generate it in closed form as a trainable variable, and keep the variable.
    Trainable(Mutex<Vec<(String, Var)>>),
}

impl Weights {
    /// Reads a `.safetensors` file or a PyTorch checkpoint (`.pth`/`.pt`/`.bin`, zip or
    /// legacy format) within the [`Limits`] the environment sets. DataParallel's
    /// `module.` prefixes are removed.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let read = || -> Result<Vec<(String, Tensor)>> {
            let limits = Limits::from_env()?;
            ensure!(
                !path.is_dir(),
                "it is a directory; give the weights file inside it"
            );
            let file = std::fs::File::open(path)?;
            match Format::of(path) {
                Format::Safetensors => {
                    let mut bytes = Vec::new();
                    std::io::BufReader::new(file).read_to_end(&mut bytes)?;
                    read_safetensors(&bytes)
                }
                Format::Pth => pth::read(file, &limits),
            }
        };
        let tensors =
            read().with_context(|| format!("cannot read weights `{}`", path.display()))?;
        Self::from_tensors(tensors, device)
    }

    /// Reads weights from the bytes of a file of `format`, within `limits` (the
    /// fuzz targets' entry point; [`Weights::load`] reads files).
    pub fn from_bytes(
        bytes: &[u8],
        format: Format,
        limits: &Limits,
        device: &Device,
    ) -> Result<Self> {
        let tensors = match format {
            Format::Safetensors => read_safetensors(bytes)?,
            Format::Pth => pth::read(std::io::Cursor::new(bytes), limits)?,
        };
        Self::from_tensors(tensors, device)
    }

    /// The tensors holding NaN or infinite values, each with how many, by name.
    pub fn non_finite(&self) -> Result<Vec<(String, usize)>> {
        let mut found = Vec::new();
        for (name, t) in &self.tensors {
            let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let bad = values.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                found.push((name.clone(), bad));
            }
        }
        Ok(found)
    }

    /// Wraps named tensors (any float dtype, any device) as a weight set.
    pub fn from_tensors(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        device: &Device,
    ) -> Result<Self> {
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| {
                let name = name
                    .strip_prefix("module.")
                    .map(str::to_owned)
                    .unwrap_or(name);
                Ok((name, t.to_dtype(DType::F32)?))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            tensors,
            taken: Mutex::default(),
            handed: Mutex::default(),
            device: device.clone(),
            dtype: DType::F32,
            fallback: Fallback::Missing,
        })
    }

    /// Closed-form parameters ([`synthetic`]) for whatever an architecture asks: an
    /// untrained model, identical to the one the reference scripts build in PyTorch.
    pub fn synthetic(device: &Device) -> Self {
        Self::generated(device, Fallback::Synthetic)
    }

    /// Like [`Weights::synthetic`], but every tensor is a [`Var`] to train; after the
    /// architecture is built, [`Weights::vars`] lists them.
    pub fn trainable(device: &Device) -> Self {
        Self::generated(device, Fallback::Trainable(Mutex::default()))
    }

    fn generated(device: &Device, fallback: Fallback) -> Self {
        Self {
            tensors: BTreeMap::new(),
            taken: Mutex::default(),
            handed: Mutex::default(),
            device: device.clone(),
            dtype: DType::F32,
            fallback,
        }
    }

    /// Hands tensors out as `dtype` (f64 for reference checks, where float32 rounding
    /// could decide which side of a rectifier's kink a near-zero input falls).
    pub fn with_dtype(self, dtype: DType) -> Self {
        Self { dtype, ..self }
    }

    /// The element type tensors are handed out as.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The trainable variables handed out so far, by name (empty unless
    /// [`Weights::trainable`]).
    pub fn vars(&self) -> Vec<(String, Var)> {
        match &self.fallback {
            Fallback::Trainable(vars) => vars.lock().map(|v| v.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Every tensor handed out so far, by name, in the order the architecture asked for
    /// them (its construction order, which is forward order).
    pub fn handed(&self) -> Vec<(String, Tensor)> {
        self.handed.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The root of the name space; `root().pp("layer1")` addresses `layer1.*`.
    pub fn root(&self) -> WeightPath<'_> {
        WeightPath {
            weights: self,
            prefix: String::new(),
        }
    }

    /// Fails if the file holds tensors that the architecture did not take.
    pub fn finish(&self) -> Result<()> {
        let taken = self
            .taken
            .lock()
            .map_err(|_| anyhow::anyhow!("weights lock poisoned"))?;
        let unexpected: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !taken.contains(*k) && !pth::is_ignored(k))
            .collect();
        if !unexpected.is_empty() {
            let shown: Vec<String> = unexpected
                .iter()
                .take(5)
                .map(|k| format!("`{k}` {:?}", self.tensors[*k].dims()))
                .collect();
            bail!(
                "the weights hold {} tensor(s) this architecture does not use: {}{}; \
                 is the card's architecture right?",
                unexpected.len(),
                shown.join(", "),
                if unexpected.len() > 5 { ", ..." } else { "" }
            );
        }
        Ok(())
    }

    fn take(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.produce(name, shape)?;
        if let Ok(mut handed) = self.handed.lock() {
            handed.push((name.to_owned(), t.clone()));
        }
        Ok(t)
    }

    fn produce(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match &self.fallback {
            Fallback::Missing => {}
            Fallback::Synthetic => {
                return Ok(synthetic::tensor(name, shape, &self.device)?.to_dtype(self.dtype)?);
            }
            Fallback::Trainable(vars) => {
                let t = synthetic::tensor(name, shape, &self.device)?.to_dtype(self.dtype)?;
                let var = Var::from_tensor(&t)?;
                let tensor = var.as_tensor().clone();
                vars.lock()
                    .map_err(|_| anyhow::anyhow!("weights lock poisoned"))?
                    .push((name.to_owned(), var));
                return Ok(tensor);
            }
        }
        let t = self.tensors.get(name).with_context(|| {
            format!("the weights have no tensor `{name}` (expected shape {shape:?}); is the card's architecture right?")
        })?;
        ensure!(
            t.dims() == shape,
            "tensor `{name}` has shape {:?}, the architecture expects {shape:?}",
            t.dims()
        );
        if let Ok(mut taken) = self.taken.lock() {
            taken.insert(name.to_owned());
        }
        Ok(t.to_device(&self.device)?.to_dtype(self.dtype)?)
    }
}

/// A prefix into a [`Weights`] name space, like Candle's `VarBuilder`.
#[derive(Clone)]
pub struct WeightPath<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> WeightPath<'a> {
    /// The sub-path `prefix.name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            weights: self.weights,
            prefix,
        }
    }

    /// The tensor `prefix.name`, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.take(&self.pp(name).prefix, shape)
    }

    /// Whether the file has a tensor `prefix.name` (for optional parameters).
    pub fn contains(&self, name: &str) -> bool {
        self.weights.tensors.contains_key(&self.pp(name).prefix)
    }

    /// The device tensors are placed on.
    pub fn device(&self) -> &Device {
        &self.weights.device
    }
}
