//! PyTorch checkpoints: the zip format of `torch.save` since 1.6, and the legacy
//! stream format before it. Both are a pickle describing tensors as strided views into
//! raw storages; only the framing of those storages differs.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom};

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Device, Tensor};

use super::pickle::{self, StorageDType, TensorRef, Value};
use crate::limits::{self, Limits};

/// The magic number `torch.save` wrote at the head of legacy files (an 80-bit long).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Keys under which training scripts commonly nest the state dict.
const WRAPPER_KEYS: [&str; 6] = [
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "ema",
    "module",
];

/// How many times the elements of the storages they read all tensors together may
/// hold. Tied weights view one storage twice; more is a file describing data it does
/// not have (zero or overlapping strides).
const VIEW_AMPLIFICATION: u64 = 2;

/// Inflated bytes a zip checkpoint may always reach, whatever its size.
const INFLATE_SLACK: u64 = 1 << 20;

/// Reads every float tensor of a PyTorch checkpoint, as f32 on the CPU, within
/// `limits`. Integer buffers that no forward pass reads (`num_batches_tracked`) are
/// dropped; any other non-float tensor is an error.
pub fn read<R: Read + Seek>(mut file: R, limits: &Limits) -> Result<Vec<(String, Tensor)>> {
    let len = file.seek(SeekFrom::End(0))?;
    file.rewind()?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head)?;
    file.rewind()?;
    if n == 4 && head == *b"PK\x03\x04" {
        read_zip(file, len, limits)
    } else if n >= 2 && head[..2] == [0x80, 0x02] {
        read_legacy(BufReader::new(file), limits)
    } else {
        bail!("not a PyTorch checkpoint (neither the zip nor the legacy torch.save format)")
    }
}

fn read_zip<R: Read + Seek>(file: R, len: u64, limits: &Limits) -> Result<Vec<(String, Tensor)>> {
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).context("corrupt zip archive")?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_owned))
        .find(|name| name.ends_with("/data.pkl") || name == "data.pkl")
        .context("zip archive without a data.pkl: not a torch.save checkpoint")?;
    let dir = pkl.strip_suffix("data.pkl").unwrap_or_default().to_owned();
    let mut inflate = Inflation {
        left: limits
            .inflate_ratio
            .saturating_mul(len)
            .saturating_add(INFLATE_SLACK),
        limit: limits.inflate_ratio,
    };
    let root = {
        let entry = zip.by_name(&pkl)?;
        let size = inflate.take(&pkl, entry.size())?;
        pickle::read(&mut BufReader::new(entry.take(size)), limits)?
    };
    let refs = float_tensors(state_dict(root)?)?;
    let mut materialized = Materialized::new(limits);
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    let mut tensors = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        if !storages.contains_key(&t.storage_key) {
            let name_in_zip = format!("{dir}data/{}", t.storage_key);
            let entry = zip
                .by_name(&name_in_zip)
                .with_context(|| format!("storage `{name_in_zip}` of tensor `{name}` missing"))?;
            let size = inflate.take(&name_in_zip, entry.size())?;
            let mut bytes = Vec::new();
            // One byte past the declared size tells a lying header from a true one.
            entry.take(size + 1).read_to_end(&mut bytes)?;
            ensure!(
                bytes.len() as u64 == size,
                "zip entry `{name_in_zip}` holds {} bytes, its header says {size}: the \
                 checkpoint is corrupt",
                bytes.len()
            );
            materialized.storage(bytes.len() / t.dtype.size());
            storages.insert(t.storage_key.clone(), decode(&bytes, t.dtype)?);
        }
        let view = materialized.view(&name, &t, &storages[&t.storage_key])?;
        tensors.push((name, view));
    }
    Ok(tensors)
}

/// What is left of a zip checkpoint's inflation budget.
struct Inflation {
    left: u64,
    limit: u64,
}

impl Inflation {
    /// Takes an entry's declared size from the budget, before anything is inflated.
    fn take(&mut self, entry: &str, size: u64) -> Result<u64> {
        self.left = self.left.checked_sub(size).ok_or_else(|| {
            limits::exceeded(
                format!(
                    "zip entry `{entry}` inflates to {size} bytes, beyond what the file's size \
                     allows (a zip bomb?)"
                ),
                self.limit,
                Limits::INFLATE_RATIO,
            )
        })?;
        Ok(size)
    }
}

fn read_legacy<R: Read>(mut r: R, limits: &Limits) -> Result<Vec<(String, Tensor)>> {
    match pickle::read(&mut r, limits)? {
        Value::Bytes(b) if b == LEGACY_MAGIC => {}
        _ => bail!("not a PyTorch checkpoint (bad legacy magic number)"),
    }
    match pickle::read(&mut r, limits)? {
        Value::Int(1001) => {}
        other => bail!("unsupported legacy torch.save protocol {other:?}"),
    }
    check_sys_info(pickle::read(&mut r, limits)?)?;
    let root = pickle::read(&mut r, limits)?;
    // Every storage in the file must be stepped over, including those of tensors
    // outside the state dict (an optimizer's, say): learn all their element types.
    let mut dtypes = HashMap::new();
    storage_dtypes(&root, &mut dtypes);
    let refs = float_tensors(state_dict(root)?)?;
    let wanted: HashSet<&str> = refs.iter().map(|(_, t)| t.storage_key.as_str()).collect();
    let Value::List(keys) = pickle::read(&mut r, limits)? else {
        bail!("corrupt legacy checkpoint: no storage key list");
    };
    // The raw storages follow in key order, each an i64 element count then the data.
    let mut materialized = Materialized::new(limits);
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            bail!("corrupt legacy checkpoint: storage key")
        };
        let dtype = *dtypes.get(&key).with_context(|| {
            format!("corrupt legacy checkpoint: storage `{key}` is used by no tensor")
        })?;
        let mut count = [0u8; 8];
        r.read_exact(&mut count)
            .context("checkpoint truncated in its storages")?;
        let count = i64::from_le_bytes(count);
        ensure!(
            count >= 0,
            "corrupt legacy checkpoint: negative storage size"
        );
        let len = (count as u64)
            .checked_mul(dtype.size() as u64)
            .context("storage size overflow")?;
        // Read up to the declared length: a lie about it ends at the end of the file.
        let mut data = r.by_ref().take(len);
        let got = if wanted.contains(key.as_str()) {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)?;
            materialized.storage(bytes.len() / dtype.size());
            let got = bytes.len() as u64;
            storages.insert(key.clone(), decode(&bytes, dtype)?);
            got
        } else {
            std::io::copy(&mut data, &mut std::io::sink())?
        };
        ensure!(got == len, "checkpoint truncated in storage `{key}`");
    }
    refs.into_iter()
        .map(|(name, t)| {
            let storage = storages
                .get(&t.storage_key)
                .with_context(|| format!("storage of tensor `{name}` missing"))?;
            let view = materialized.view(&name, &t, storage)?;
            Ok((name, view))
        })
        .collect()
}

fn storage_dtypes(v: &Value, out: &mut HashMap<String, StorageDType>) {
    match v {
        Value::Tensor(t) => {
            out.insert(t.storage_key.clone(), t.dtype);
        }
        Value::Tuple(items) | Value::List(items) => {
            items.iter().for_each(|i| storage_dtypes(i, out))
        }
        Value::Dict(items) => items.iter().for_each(|(k, v)| {
            storage_dtypes(k, out);
            storage_dtypes(v, out);
        }),
        _ => {}
    }
}

fn check_sys_info(info: Value) -> Result<()> {
    let Value::Dict(items) = info else {
        bail!("corrupt legacy checkpoint: no sys_info")
    };
    for (k, v) in items {
        if k == Value::Str("little_endian".into()) && v == Value::Bool(false) {
            bail!("big-endian legacy checkpoints are not supported");
        }
    }
    Ok(())
}

/// Finds the state dict in a checkpoint's root object: the root itself, or the value
/// of a wrapper key such as `state_dict`.
fn state_dict(root: Value) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(items) = root else {
        bail!("the checkpoint is not a dict of tensors (re-save it with model.state_dict())");
    };
    let holds_tensors =
        |items: &[(Value, Value)]| items.iter().any(|(_, v)| matches!(v, Value::Tensor(_)));
    let items = if holds_tensors(&items) {
        items
    } else {
        let keys: Vec<String> = items
            .iter()
            .filter_map(|(k, _)| match k {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let nested = items.into_iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Dict(d))
                if WRAPPER_KEYS.contains(&k.as_str()) && holds_tensors(&d) =>
            {
                Some(d)
            }
            _ => None,
        });
        nested.with_context(|| format!("no state dict in the checkpoint; its keys are {keys:?}"))?
    };
    Ok(items
        .into_iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Some((k, t)),
            _ => None,
        })
        .collect())
}

/// Buffers PyTorch keeps in state dicts that no forward pass reads.
const IGNORED_SUFFIXES: [&str; 1] = ["num_batches_tracked"];

/// Whether `name` is a buffer no forward pass reads (and so may be of any type).
pub(super) fn is_ignored(name: &str) -> bool {
    IGNORED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The state dict's float tensors. Integer buffers no forward pass reads are dropped;
/// any other non-float tensor is refused, since reading it as weights would be garbage.
fn float_tensors(refs: Vec<(String, TensorRef)>) -> Result<Vec<(String, TensorRef)>> {
    let mut kept = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        if t.dtype.is_float() {
            kept.push((name, t));
        } else {
            ensure!(
                is_ignored(&name),
                "tensor `{name}` holds {} values; unitscope reads float weights (float16, \
                 bfloat16, float32, float64): save the model's parameters as floats",
                t.dtype.name()
            );
        }
    }
    Ok(kept)
}

/// Decodes a raw little-endian storage into f32 values.
fn decode(bytes: &[u8], dtype: StorageDType) -> Result<Vec<f32>> {
    fn chunks<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().unwrap_or([0; N])))
            .collect()
    }
    Ok(match dtype {
        StorageDType::F32 => chunks(bytes, f32::from_le_bytes),
        StorageDType::F64 => chunks(bytes, |b| f64::from_le_bytes(b) as f32),
        StorageDType::F16 | StorageDType::BF16 => {
            let dt = if dtype == StorageDType::F16 {
                DType::F16
            } else {
                DType::BF16
            };
            let bytes = &bytes[..bytes.len() / 2 * 2];
            Tensor::from_raw_buffer(bytes, dt, &[bytes.len() / 2], &Device::Cpu)?
                .to_dtype(DType::F32)?
                .to_vec1()?
        }
        other => bail!("{} storages are not weights", other.name()),
    })
}

/// The elements a checkpoint's tensors have made so far, against what the storages
/// they read hold.
struct Materialized<'a> {
    storage_elements: u64,
    view_elements: u64,
    limits: &'a Limits,
}

impl<'a> Materialized<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self {
            storage_elements: 0,
            view_elements: 0,
            limits,
        }
    }

    fn storage(&mut self, elements: usize) {
        self.storage_elements += elements as u64;
    }

    /// Materialises a strided view of a storage as a contiguous tensor.
    fn view(&mut self, name: &str, t: &TensorRef, storage: &[f32]) -> Result<Tensor> {
        // Sizes come from the file: check every product, so a corrupt one is an error
        // rather than an overflow or a huge allocation.
        let corrupt = || {
            anyhow::anyhow!(
                "tensor `{name}` has an impossible shape {:?}: the checkpoint is corrupt",
                t.shape
            )
        };
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(corrupt)?;
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&d, &s)| {
                d.saturating_sub(1)
                    .checked_mul(s)
                    .and_then(|x| acc.checked_add(x))
            })
            .ok_or_else(corrupt)?;
        if numel as u64 > self.limits.tensor_elements {
            return Err(limits::exceeded(
                format!("tensor `{name}` has {numel} elements"),
                self.limits.tensor_elements,
                Limits::TENSOR_ELEMENTS,
            ));
        }
        ensure!(
            numel == 0 || last < storage.len(),
            "tensor `{name}` of shape {:?} reaches past the end of its storage ({} elements): \
             the checkpoint is corrupt or truncated",
            t.shape,
            storage.len()
        );
        self.view_elements += numel as u64;
        ensure!(
            self.view_elements <= VIEW_AMPLIFICATION * self.storage_elements,
            "the checkpoint's tensors up to `{name}` view {} elements of storages that hold {}: \
             strides that repeat data (zero or overlapping) this much describe no real model",
            self.view_elements,
            self.storage_elements
        );
        let mut data = Vec::with_capacity(numel);
        let mut index = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let at = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            data.push(storage[at]);
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(Tensor::from_vec(data, t.shape.as_slice(), &Device::Cpu)?)
    }
}
