//! PyTorch checkpoints: the zip format of `torch.save` since 1.6, and the legacy
//! stream format before it. Both are a pickle describing tensors as strided views into
//! raw storages; only the framing of those storages differs.

use std::collections::HashMap;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use candle_core::{DType, Device, Tensor};

use super::pickle::{self, StorageDType, TensorRef, Value};

/// The magic number `torch.save` wrote at the head of legacy files (an 80-bit long).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The largest tensor we materialise (16 GiB of f32).
const MAX_ELEMENTS: usize = 1 << 32;

/// Keys under which training scripts commonly nest the state dict.
const WRAPPER_KEYS: [&str; 6] = [
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "ema",
    "module",
];

/// Reads every tensor of a PyTorch checkpoint, as f32 on the CPU.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut file = std::fs::File::open(path)?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head)?;
    file.rewind()?;
    if n == 4 && head == *b"PK\x03\x04" {
        read_zip(file)
    } else if n >= 2 && head[..2] == [0x80, 0x02] {
        read_legacy(BufReader::new(file))
    } else {
        bail!("not a PyTorch checkpoint (neither the zip nor the legacy torch.save format)")
    }
}

fn read_zip(file: std::fs::File) -> Result<Vec<(String, Tensor)>> {
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).context("corrupt zip archive")?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_owned))
        .find(|name| name.ends_with("/data.pkl") || name == "data.pkl")
        .context("zip archive without a data.pkl: not a torch.save checkpoint")?;
    let dir = pkl.strip_suffix("data.pkl").unwrap_or_default().to_owned();
    let root = pickle::read(&mut BufReader::new(zip.by_name(&pkl)?))?;
    let refs = state_dict(root)?;
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    let mut tensors = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        if !storages.contains_key(&t.storage_key) {
            let entry = format!("{dir}data/{}", t.storage_key);
            let mut bytes = Vec::new();
            zip.by_name(&entry)
                .with_context(|| format!("storage `{entry}` of tensor `{name}` missing"))?
                .read_to_end(&mut bytes)?;
            storages.insert(t.storage_key.clone(), decode(&bytes, t.dtype)?);
        }
        tensors.push((name.clone(), view(&name, &t, &storages[&t.storage_key])?));
    }
    Ok(tensors)
}

fn read_legacy<R: Read>(mut r: R) -> Result<Vec<(String, Tensor)>> {
    match pickle::read(&mut r)? {
        Value::Bytes(b) if b == LEGACY_MAGIC => {}
        _ => bail!("not a PyTorch checkpoint (bad legacy magic number)"),
    }
    match pickle::read(&mut r)? {
        Value::Int(1001) => {}
        other => bail!("unsupported legacy torch.save protocol {other:?}"),
    }
    check_sys_info(pickle::read(&mut r)?)?;
    let root = pickle::read(&mut r)?;
    // Every storage in the file must be stepped over, including those of tensors
    // outside the state dict (an optimizer's, say): learn all their element types.
    let mut dtypes = HashMap::new();
    storage_dtypes(&root, &mut dtypes);
    let refs = state_dict(root)?;
    let Value::List(keys) = pickle::read(&mut r)? else {
        bail!("corrupt legacy checkpoint: no storage key list");
    };
    // The raw storages follow in key order, each an i64 element count then the data.
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
        let len = (count as usize)
            .checked_mul(dtype.size())
            .context("storage size overflow")?;
        let mut bytes = Vec::new();
        r.by_ref().take(len as u64).read_to_end(&mut bytes)?;
        ensure!(
            bytes.len() == len,
            "checkpoint truncated in storage `{key}`"
        );
        storages.insert(key, decode(&bytes, dtype)?);
    }
    refs.into_iter()
        .map(|(name, t)| {
            let storage = storages
                .get(&t.storage_key)
                .with_context(|| format!("storage of tensor `{name}` missing"))?;
            Ok((name.clone(), view(&name, &t, storage)?))
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
        StorageDType::I64 => chunks(bytes, |b| i64::from_le_bytes(b) as f32),
        StorageDType::I32 => chunks(bytes, |b| i32::from_le_bytes(b) as f32),
        StorageDType::I16 => chunks(bytes, |b| i16::from_le_bytes(b) as f32),
        StorageDType::I8 => chunks(bytes, |b: [u8; 1]| b[0] as i8 as f32),
        StorageDType::U8 | StorageDType::Bool => chunks(bytes, |b: [u8; 1]| b[0] as f32),
        StorageDType::F16 | StorageDType::BF16 => {
            let dt = if dtype == StorageDType::F16 {
                DType::F16
            } else {
                DType::BF16
            };
            Tensor::from_raw_buffer(bytes, dt, &[bytes.len() / 2], &Device::Cpu)?
                .to_dtype(DType::F32)?
                .to_vec1()?
        }
    })
}

/// Materialises a strided view of a storage as a contiguous tensor.
fn view(name: &str, t: &TensorRef, storage: &[f32]) -> Result<Tensor> {
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
    ensure!(
        numel <= MAX_ELEMENTS,
        "tensor `{name}` has {numel} elements, more than unitscope loads"
    );
    ensure!(
        numel == 0 || last < storage.len(),
        "tensor `{name}` of shape {:?} reaches past the end of its storage ({} elements): \
         the checkpoint is corrupt or truncated",
        t.shape,
        storage.len()
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
