//! The part of Python's pickle format that `torch.save` uses for state dicts, read as
//! data. Nothing is ever executed: the only callables a stream may name are the few
//! constructors that rebuild tensors and ordered dicts, and any other global (say
//! `os.system`) is refused with an error that names it.

use std::io::Read;

use anyhow::{Context, Result, bail, ensure};

/// The element types of torch storages we can turn into Candle tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDType {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A tensor as the pickle describes it: a strided view into a storage held elsewhere
/// (a zip entry, or the raw bytes after the pickle in the legacy format).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage_key: String,
    pub dtype: StorageDType,
    /// Offset into the storage, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A global the allowlist admits, not yet called.
    Global(Global),
    /// `('storage', StorageClass, key, location, numel)`, torch's persistent id.
    Storage {
        key: String,
        dtype: StorageDType,
    },
    Tensor(TensorRef),
    /// The marker that list, tuple and dict opcodes collect up to.
    Mark,
}

/// The globals a state-dict pickle may name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    StorageClass(StorageDType),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Result<Self> {
        let storage = (module == "torch")
            .then(|| StorageDType::from_storage_class(name))
            .flatten();
        Ok(match (module, name, storage) {
            (_, _, Some(dtype)) => Self::StorageClass(dtype),
            ("collections", "OrderedDict", _) => Self::OrderedDict,
            ("torch._utils", "_rebuild_tensor", _) => Self::RebuildTensor,
            ("torch._utils", "_rebuild_tensor_v2", _) => Self::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter", _) => Self::RebuildParameter,
            _ => bail!(
                "refusing to load: the pickle names the global `{module}.{name}`, which is not \
                 part of a plain state dict (unitscope never runs pickled code); re-save the \
                 weights with `torch.save(model.state_dict(), path)` or as .safetensors"
            ),
        })
    }
}

/// Reads one pickle (up to its STOP opcode) from `r` and returns its value.
pub fn read<R: Read>(r: &mut R) -> Result<Value> {
    let mut vm = Machine::default();
    loop {
        let op = read_u8(r).context("pickle ended before its STOP opcode")?;
        if vm.step(op, r)? {
            return vm.pop();
        }
    }
}

#[derive(Default)]
struct Machine {
    stack: Vec<Value>,
    memo: std::collections::HashMap<u64, Value>,
}

impl Machine {
    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().context("corrupt pickle: stack underflow")
    }

    fn top(&mut self) -> Result<&mut Value> {
        self.stack
            .last_mut()
            .context("corrupt pickle: stack underflow")
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .context("corrupt pickle: no MARK on the stack")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, id: u64) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(id, v);
        Ok(())
    }

    fn memo_get(&mut self, id: u64) -> Result<()> {
        let v = self.memo.get(&id).cloned();
        self.stack
            .push(v.with_context(|| format!("corrupt pickle: memo {id} unset"))?);
        Ok(())
    }

    /// Executes one opcode; returns true at STOP.
    fn step<R: Read>(&mut self, op: u8, r: &mut R) -> Result<bool> {
        match op {
            0x80 => {
                read_u8(r)?; // PROTO: version
            }
            0x95 => {
                read_bytes(r, 8)?; // FRAME: length, a hint only
            }
            b'.' => return Ok(true),
            b'(' => self.stack.push(Value::Mark),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'J' => self
                .stack
                .push(Value::Int(i32::from_le_bytes(read_array(r)?) as i64)),
            b'K' => self.stack.push(Value::Int(read_u8(r)? as i64)),
            b'M' => self
                .stack
                .push(Value::Int(u16::from_le_bytes(read_array(r)?) as i64)),
            0x8a => {
                let n = read_u8(r)? as usize;
                let bytes = read_bytes(r, n)?;
                self.stack.push(long_from_bytes(&bytes));
            }
            0x8b => {
                let n = u32::from_le_bytes(read_array(r)?) as usize;
                let bytes = read_bytes(r, n)?;
                self.stack.push(long_from_bytes(&bytes));
            }
            b'I' => {
                let line = read_line(r)?;
                let v = match line.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => Value::Int(
                        s.parse()
                            .with_context(|| format!("corrupt pickle: INT {s:?}"))?,
                    ),
                };
                self.stack.push(v);
            }
            b'G' => self
                .stack
                .push(Value::Float(f64::from_be_bytes(read_array(r)?))),
            b'X' => {
                let n = u32::from_le_bytes(read_array(r)?) as usize;
                self.stack.push(Value::Str(read_string(r, n)?));
            }
            0x8c => {
                let n = read_u8(r)? as usize;
                self.stack.push(Value::Str(read_string(r, n)?));
            }
            0x8d => {
                let n = u64::from_le_bytes(read_array(r)?) as usize;
                self.stack.push(Value::Str(read_string(r, n)?));
            }
            // BINSTRING / SHORT_BINSTRING: Python 2 str, read as latin-1-ish text.
            b'T' => {
                let n = u32::from_le_bytes(read_array(r)?) as usize;
                self.stack.push(Value::Str(latin1(&read_bytes(r, n)?)));
            }
            b'U' => {
                let n = read_u8(r)? as usize;
                self.stack.push(Value::Str(latin1(&read_bytes(r, n)?)));
            }
            b'B' => {
                let n = u32::from_le_bytes(read_array(r)?) as usize;
                self.stack.push(Value::Bytes(read_bytes(r, n)?));
            }
            b'C' => {
                let n = read_u8(r)? as usize;
                self.stack.push(Value::Bytes(read_bytes(r, n)?));
            }
            0x8e => {
                let n = u64::from_le_bytes(read_array(r)?) as usize;
                self.stack.push(Value::Bytes(read_bytes(r, n)?));
            }
            b')' => self.stack.push(Value::Tuple(vec![])),
            b']' => self.stack.push(Value::List(vec![])),
            b'}' => self.stack.push(Value::Dict(vec![])),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                ensure!(self.stack.len() >= n, "corrupt pickle: stack underflow");
                let items = self.stack.split_off(self.stack.len() - n);
                self.stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(items));
            }
            b'd' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Dict(pairs(items)?));
            }
            b'a' => {
                let v = self.pop()?;
                match self.top()? {
                    Value::List(l) => l.push(v),
                    other => bail!("corrupt pickle: APPEND to {}", kind(other)),
                }
            }
            b'e' => {
                let items = self.pop_mark()?;
                match self.top()? {
                    Value::List(l) => l.extend(items),
                    other => bail!("corrupt pickle: APPENDS to {}", kind(other)),
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                match self.top()? {
                    Value::Dict(d) => d.push((k, v)),
                    other => bail!("corrupt pickle: SETITEM on {}", kind(other)),
                }
            }
            b'u' => {
                let items = pairs(self.pop_mark()?)?;
                match self.top()? {
                    Value::Dict(d) => d.extend(items),
                    other => bail!("corrupt pickle: SETITEMS on {}", kind(other)),
                }
            }
            b'q' => {
                let id = read_u8(r)? as u64;
                self.memo_put(id)?;
            }
            b'r' => {
                let id = u32::from_le_bytes(read_array(r)?) as u64;
                self.memo_put(id)?;
            }
            0x94 => {
                let id = self.memo.len() as u64;
                self.memo_put(id)?;
            }
            b'p' => {
                let id = read_line(r)?.parse().context("corrupt pickle: PUT id")?;
                self.memo_put(id)?;
            }
            b'h' => {
                let id = read_u8(r)? as u64;
                self.memo_get(id)?;
            }
            b'j' => {
                let id = u32::from_le_bytes(read_array(r)?) as u64;
                self.memo_get(id)?;
            }
            b'g' => {
                let id = read_line(r)?.parse().context("corrupt pickle: GET id")?;
                self.memo_get(id)?;
            }
            b'c' => {
                let module = read_line(r)?;
                let name = read_line(r)?;
                self.stack
                    .push(Value::Global(Global::resolve(&module, &name)?));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => {
                        self.stack.push(Value::Global(Global::resolve(&m, &n)?))
                    }
                    _ => bail!("corrupt pickle: STACK_GLOBAL without two strings"),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.stack.push(persistent_load(pid)?);
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callee = self.pop()?;
                self.stack.push(call(callee, args)?);
            }
            b'b' => {
                // BUILD sets an object's state; a state dict's `_metadata` is all we
                // meet here, and we have no use for it.
                self.pop()?;
                match self.top()? {
                    Value::Dict(_) | Value::Tensor(_) => {}
                    other => bail!("corrupt pickle: BUILD on {}", kind(other)),
                }
            }
            op => bail!(
                "unsupported pickle opcode 0x{op:02x}: not a PyTorch state dict, or a corrupt file"
            ),
        }
        Ok(false)
    }
}

fn call(callee: Value, args: Value) -> Result<Value> {
    let Value::Global(global) = callee else {
        bail!("corrupt pickle: REDUCE on {}", kind(&callee));
    };
    let Value::Tuple(mut args) = args else {
        bail!("corrupt pickle: call arguments are not a tuple");
    };
    match global {
        Global::OrderedDict => Ok(Value::Dict(vec![])),
        Global::RebuildTensor | Global::RebuildTensorV2 => {
            ensure!(
                args.len() >= 4,
                "corrupt pickle: _rebuild_tensor with {} args",
                args.len()
            );
            args.truncate(4);
            let stride = usizes(args.pop())?;
            let shape = usizes(args.pop())?;
            let offset = as_usize(args.pop().unwrap_or(Value::None))?;
            let Some(Value::Storage { key, dtype }) = args.pop() else {
                bail!("corrupt pickle: _rebuild_tensor without a storage");
            };
            ensure!(
                shape.len() == stride.len(),
                "corrupt pickle: tensor shape and stride differ in rank"
            );
            Ok(Value::Tensor(TensorRef {
                storage_key: key,
                dtype,
                offset,
                shape,
                stride,
            }))
        }
        Global::RebuildParameter => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => bail!("corrupt pickle: _rebuild_parameter without a tensor"),
        },
        Global::StorageClass(_) => bail!("corrupt pickle: a storage class called directly"),
    }
}

fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = pid else {
        bail!("corrupt pickle: persistent id is not a tuple");
    };
    match items.as_slice() {
        [
            Value::Str(tag),
            Value::Global(Global::StorageClass(dtype)),
            Value::Str(key),
            ..,
        ] if tag == "storage" => Ok(Value::Storage {
            key: key.clone(),
            dtype: *dtype,
        }),
        _ => bail!("corrupt pickle: unknown persistent id {items:?}"),
    }
}

fn as_usize(v: Value) -> Result<usize> {
    match v {
        Value::Int(i) if i >= 0 => Ok(i as usize),
        other => bail!("corrupt pickle: expected a size, found {}", kind(&other)),
    }
}

fn usizes(v: Option<Value>) -> Result<Vec<usize>> {
    match v {
        Some(Value::Tuple(items)) | Some(Value::List(items)) => {
            items.into_iter().map(as_usize).collect()
        }
        _ => bail!("corrupt pickle: expected a tuple of sizes"),
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    ensure!(
        items.len().is_multiple_of(2),
        "corrupt pickle: odd number of dict items"
    );
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Global(_) => "a global",
        Value::Storage { .. } => "a storage",
        Value::Tensor(_) => "a tensor",
        Value::Mark => "a mark",
    }
}

/// Python longs are little-endian two's complement; larger than i64 (torch's legacy
/// magic number is 80 bits) they are kept as raw bytes.
fn long_from_bytes(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::Bytes(bytes.to_vec());
    }
    let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut buf = [fill; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

fn read_u8<R: Read>(r: &mut R) -> Result<u8> {
    Ok(read_array::<1, R>(r)?[0])
}

fn read_array<const N: usize, R: Read>(r: &mut R) -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf).context("pickle truncated")?;
    Ok(buf)
}

/// Reads `n` bytes without trusting `n` for the allocation: a corrupt length fails
/// at the end of the data instead of reserving gigabytes first.
fn read_bytes<R: Read>(r: &mut R, n: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(n as u64).read_to_end(&mut buf)?;
    ensure!(buf.len() == n, "pickle truncated");
    Ok(buf)
}

fn read_string<R: Read>(r: &mut R, n: usize) -> Result<String> {
    String::from_utf8(read_bytes(r, n)?).context("corrupt pickle: string is not UTF-8")
}

fn read_line<R: Read>(r: &mut R) -> Result<String> {
    let mut line = Vec::new();
    loop {
        let b = read_u8(r)?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        ensure!(line.len() <= 4096, "corrupt pickle: text line too long");
    }
    String::from_utf8(line).context("corrupt pickle: line is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_foreign_globals() {
        // protocol 2: GLOBAL 'os system', then a call; must stop at the GLOBAL.
        let data = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let err = read(&mut &data[..]).unwrap_err().to_string();
        assert!(err.contains("`os.system`"), "{err}");
    }

    #[test]
    fn reads_ordered_dict_of_values() {
        // collections.OrderedDict() with {'a': 1, 'b': (2.5, None)}
        let data = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bG@\x04\x00\x00\x00\x00\x00\x00N\x86u.";
        let v = read(&mut &data[..]).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (Value::Str("a".into()), Value::Int(1)),
                (
                    Value::Str("b".into()),
                    Value::Tuple(vec![Value::Float(2.5), Value::None])
                ),
            ])
        );
    }

    #[test]
    fn big_longs_do_not_overflow() {
        let data = b"\x80\x02\x8a\x0alp\x9cF\xf9 j\xa8P\x19.";
        assert!(matches!(read(&mut &data[..]).unwrap(), Value::Bytes(b) if b.len() == 10));
    }
}
