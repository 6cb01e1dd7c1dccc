//! The part of Python's pickle format that `torch.save` uses for state dicts, read as
//! data. Nothing is ever executed: the only callables a stream may name are the few
//! constructors that rebuild tensors and ordered dicts, and any other global (say
//! `os.system`) is refused with an error that names it.

use std::collections::HashMap;
use std::io::Read;

use anyhow::{Context, Result, bail, ensure};

use crate::limits::{self, Limits};

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

    /// The dtype's name in PyTorch.
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "float64",
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }

    /// Whether weights of this type are floating point.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F64 | Self::F32 | Self::F16 | Self::BF16)
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
            ("torch", storage, None) if storage.ends_with("Storage") => bail!(
                "the checkpoint holds `torch.{storage}` tensors, an element type unitscope does \
                 not read; save the weights as float16, bfloat16, float32 or float64"
            ),
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

/// Reads one pickle (up to its STOP opcode) from `r` and returns its value, within
/// `limits`' depth and decoded size.
pub fn read<R: Read>(r: &mut R, limits: &Limits) -> Result<Value> {
    let mut vm = Machine {
        stack: Vec::new(),
        memo: HashMap::new(),
        spent: 0,
        limits,
    };
    loop {
        let op = read_u8(r).context("pickle ended before its STOP opcode")?;
        if vm.step(op, r)? {
            return Ok(vm.pop()?.value);
        }
    }
}

/// The most dimensions a tensor may have (weights have at most 5); materializing a
/// view costs its elements times its rank.
const MAX_RANK: usize = 32;

/// Bytes counted for every value besides its payload (an enum and a vector header).
const NODE_BYTES: u64 = 64;

/// A value on the stack or in the memo, with what bounds it: how deep its containers
/// nest and roughly how many bytes it holds. Kept beside the value so that building
/// a container or copying one costs no walk over its contents.
#[derive(Clone)]
struct Node {
    value: Value,
    depth: u64,
    bytes: u64,
}

impl Node {
    fn leaf(value: Value, payload: usize) -> Self {
        Self {
            value,
            depth: 0,
            bytes: NODE_BYTES + payload as u64,
        }
    }
}

struct Machine<'a> {
    stack: Vec<Node>,
    memo: HashMap<u64, Node>,
    /// Bytes of values made so far: every leaf read and every copy of a memo entry or
    /// of the top of the stack. Containers only move what was counted.
    spent: u64,
    limits: &'a Limits,
}

impl Machine<'_> {
    /// Counts `bytes` about to be made, failing past the pickle's size limit.
    fn spend(&mut self, bytes: u64) -> Result<()> {
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > self.limits.pickle_bytes {
            return Err(limits::exceeded(
                "the checkpoint's pickle decodes to more bytes than allowed, memo copies \
                 included (an amplification?)",
                self.limits.pickle_bytes,
                Limits::PICKLE_BYTES,
            ));
        }
        Ok(())
    }

    fn push_leaf(&mut self, value: Value, payload: usize) -> Result<()> {
        let node = Node::leaf(value, payload);
        self.spend(node.bytes)?;
        self.stack.push(node);
        Ok(())
    }

    /// Pushes a copy of `node` (from the memo or the stack), counting its bytes.
    fn push_copy(&mut self, node: Node) -> Result<()> {
        self.spend(node.bytes)?;
        self.stack.push(node);
        Ok(())
    }

    /// Wraps `items` in a container made by `make`, within the depth limit.
    fn container(&self, items: Vec<Node>, make: impl FnOnce(Vec<Value>) -> Value) -> Result<Node> {
        let depth = 1 + items.iter().map(|n| n.depth).max().unwrap_or(0);
        self.check_depth(depth)?;
        let bytes = NODE_BYTES + items.iter().map(|n| n.bytes).sum::<u64>();
        Ok(Node {
            value: make(items.into_iter().map(|n| n.value).collect()),
            depth,
            bytes,
        })
    }

    fn check_depth(&self, depth: u64) -> Result<()> {
        if depth > self.limits.pickle_depth {
            return Err(limits::exceeded(
                format!("the checkpoint's pickle nests containers {depth} deep"),
                self.limits.pickle_depth,
                Limits::PICKLE_DEPTH,
            ));
        }
        Ok(())
    }

    /// Adds `items` to the list (or, for `dict`, the dict of key-value pairs) on top
    /// of the stack, as opcode `name`.
    fn extend_top(&mut self, items: Vec<Node>, dict: bool, name: &str) -> Result<()> {
        let depth = 1 + items.iter().map(|n| n.depth).max().unwrap_or(0);
        self.check_depth(depth)?;
        let top = self
            .stack
            .last_mut()
            .context("corrupt pickle: stack underflow")?;
        top.depth = top.depth.max(depth);
        top.bytes += items.iter().map(|n| n.bytes).sum::<u64>();
        let values = items.into_iter().map(|n| n.value);
        match (&mut top.value, dict) {
            (Value::List(l), false) => l.extend(values),
            (Value::Dict(d), true) => d.extend(pairs(values.collect())),
            (other, _) => bail!("corrupt pickle: {name} on {}", kind(other)),
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Node> {
        self.stack.pop().context("corrupt pickle: stack underflow")
    }

    fn top(&self) -> Result<&Node> {
        self.stack.last().context("corrupt pickle: stack underflow")
    }

    fn pop_mark(&mut self) -> Result<Vec<Node>> {
        let mark = self
            .stack
            .iter()
            .rposition(|n| matches!(n.value, Value::Mark))
            .context("corrupt pickle: no MARK on the stack")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, id: u64) -> Result<()> {
        let node = self.top()?.clone();
        self.spend(node.bytes)?;
        self.memo.insert(id, node);
        Ok(())
    }

    fn memo_get(&mut self, id: u64) -> Result<()> {
        let node = self
            .memo
            .get(&id)
            .cloned()
            .with_context(|| format!("corrupt pickle: memo {id} unset"))?;
        self.push_copy(node)
    }

    /// Reads `n` bytes of a string or bytes opcode, counted before they are read.
    fn payload<R: Read>(&mut self, r: &mut R, n: u64) -> Result<Vec<u8>> {
        self.spend(n)?;
        read_bytes(r, n)
    }

    fn push_str<R: Read>(&mut self, r: &mut R, n: u64) -> Result<()> {
        let bytes = self.payload(r, n)?;
        let s = String::from_utf8(bytes).context("corrupt pickle: string is not UTF-8")?;
        let len = s.len();
        self.push_leaf(Value::Str(s), len)
    }

    fn push_latin1<R: Read>(&mut self, r: &mut R, n: u64) -> Result<()> {
        let bytes = self.payload(r, n)?;
        self.push_leaf(Value::Str(latin1(&bytes)), bytes.len() * 2)
    }

    fn push_bytes<R: Read>(&mut self, r: &mut R, n: u64) -> Result<()> {
        let bytes = self.payload(r, n)?;
        let len = bytes.len();
        self.push_leaf(Value::Bytes(bytes), len)
    }

    fn push_long<R: Read>(&mut self, r: &mut R, n: u64) -> Result<()> {
        let bytes = self.payload(r, n)?;
        let len = bytes.len();
        self.push_leaf(long_from_bytes(&bytes), len)
    }

    /// Executes one opcode; returns true at STOP.
    fn step<R: Read>(&mut self, op: u8, r: &mut R) -> Result<bool> {
        match op {
            0x80 => {
                read_u8(r)?; // PROTO: version
            }
            0x95 => {
                read_array::<8, R>(r)?; // FRAME: length, a hint only
            }
            b'.' => return Ok(true),
            b'(' => self.push_leaf(Value::Mark, 0)?,
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let node = self.top()?.clone();
                self.push_copy(node)?;
            }
            b'N' => self.push_leaf(Value::None, 0)?,
            0x88 => self.push_leaf(Value::Bool(true), 0)?,
            0x89 => self.push_leaf(Value::Bool(false), 0)?,
            b'J' => self.push_leaf(Value::Int(i32::from_le_bytes(read_array(r)?) as i64), 0)?,
            b'K' => self.push_leaf(Value::Int(read_u8(r)? as i64), 0)?,
            b'M' => self.push_leaf(Value::Int(u16::from_le_bytes(read_array(r)?) as i64), 0)?,
            0x8a => {
                let n = read_u8(r)? as u64;
                self.push_long(r, n)?;
            }
            0x8b => {
                let n = u32::from_le_bytes(read_array(r)?) as u64;
                self.push_long(r, n)?;
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
                self.push_leaf(v, 0)?;
            }
            b'G' => self.push_leaf(Value::Float(f64::from_be_bytes(read_array(r)?)), 0)?,
            b'X' => {
                let n = u32::from_le_bytes(read_array(r)?) as u64;
                self.push_str(r, n)?;
            }
            0x8c => {
                let n = read_u8(r)? as u64;
                self.push_str(r, n)?;
            }
            0x8d => {
                let n = u64::from_le_bytes(read_array(r)?);
                self.push_str(r, n)?;
            }
            // BINSTRING / SHORT_BINSTRING: Python 2 str, read as latin-1-ish text.
            b'T' => {
                let n = u32::from_le_bytes(read_array(r)?) as u64;
                self.push_latin1(r, n)?;
            }
            b'U' => {
                let n = read_u8(r)? as u64;
                self.push_latin1(r, n)?;
            }
            b'B' => {
                let n = u32::from_le_bytes(read_array(r)?) as u64;
                self.push_bytes(r, n)?;
            }
            b'C' => {
                let n = read_u8(r)? as u64;
                self.push_bytes(r, n)?;
            }
            0x8e => {
                let n = u64::from_le_bytes(read_array(r)?);
                self.push_bytes(r, n)?;
            }
            b')' => self.push_leaf(Value::Tuple(vec![]), 0)?,
            b']' => self.push_leaf(Value::List(vec![]), 0)?,
            b'}' => self.push_leaf(Value::Dict(vec![]), 0)?,
            b't' => {
                let items = self.pop_mark()?;
                let node = self.container(items, Value::Tuple)?;
                self.stack.push(node);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                ensure!(self.stack.len() >= n, "corrupt pickle: stack underflow");
                let items = self.stack.split_off(self.stack.len() - n);
                let node = self.container(items, Value::Tuple)?;
                self.stack.push(node);
            }
            b'l' => {
                let items = self.pop_mark()?;
                let node = self.container(items, Value::List)?;
                self.stack.push(node);
            }
            b'd' => {
                let items = self.pop_mark()?;
                ensure!(
                    items.len().is_multiple_of(2),
                    "corrupt pickle: odd number of dict items"
                );
                let node = self.container(items, |v| Value::Dict(pairs(v)))?;
                self.stack.push(node);
            }
            b'a' => {
                let v = self.pop()?;
                self.extend_top(vec![v], false, "APPEND")?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.extend_top(items, false, "APPENDS")?;
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.extend_top(vec![k, v], true, "SETITEM")?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                ensure!(
                    items.len().is_multiple_of(2),
                    "corrupt pickle: odd number of dict items"
                );
                self.extend_top(items, true, "SETITEMS")?;
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
                self.push_leaf(Value::Global(Global::resolve(&module, &name)?), 0)?;
            }
            0x93 => {
                let name = self.pop()?.value;
                let module = self.pop()?.value;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => {
                        self.push_leaf(Value::Global(Global::resolve(&m, &n)?), 0)?
                    }
                    _ => bail!("corrupt pickle: STACK_GLOBAL without two strings"),
                }
            }
            b'Q' => {
                let pid = self.pop()?.value;
                self.push_leaf(persistent_load(pid)?, 0)?;
            }
            b'R' | 0x81 => {
                let args = self.pop()?;
                let callee = self.pop()?.value;
                // Made of its arguments, whose bytes were counted as they were read.
                self.stack.push(Node {
                    value: call(callee, args.value)?,
                    depth: 0,
                    bytes: args.bytes,
                });
            }
            b'b' => {
                // BUILD sets an object's state; a state dict's `_metadata` is all we
                // meet here, and we have no use for it.
                self.pop()?;
                match &self.top()?.value {
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
            ensure!(
                shape.len() <= MAX_RANK,
                "a tensor of rank {} (at most {MAX_RANK}): the checkpoint is corrupt",
                shape.len()
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

/// Pairs up a dict's flat key-value list (its length checked even by the caller).
fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
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
fn read_bytes<R: Read>(r: &mut R, n: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(n).read_to_end(&mut buf)?;
    ensure!(buf.len() as u64 == n, "pickle truncated");
    Ok(buf)
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
        let err = read(&mut &data[..], &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`os.system`"), "{err}");
    }

    #[test]
    fn reads_ordered_dict_of_values() {
        // collections.OrderedDict() with {'a': 1, 'b': (2.5, None)}
        let data = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bG@\x04\x00\x00\x00\x00\x00\x00N\x86u.";
        let v = read(&mut &data[..], &Limits::default()).unwrap();
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
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // 100k MARKs, then 100k LISTs: lists nested 100k deep.
        let mut data = vec![0x80, 0x02];
        data.extend(std::iter::repeat_n(b'(', 100_000));
        data.extend(std::iter::repeat_n(b'l', 100_000));
        data.push(b'.');
        let err = read(&mut &data[..], &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nests containers 101 deep") && err.contains("UNITSCOPE_MAX_PICKLE_DEPTH"),
            "{err}"
        );
    }

    #[test]
    fn memo_amplification_is_refused() {
        // A 1 KiB bytes object, memoized, then a list that appends it 2^20 times by
        // memo references: 1 GiB decoded from ~3 MB of pickle.
        let mut data = vec![0x80, 0x02, b'B'];
        data.extend(1024u32.to_le_bytes());
        data.extend([0u8; 1024]);
        data.extend([b'q', 0, b'0', b']']);
        for _ in 0..1 << 20 {
            data.extend([b'h', 0, b'a']);
        }
        data.push(b'.');
        let err = read(&mut &data[..], &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("UNITSCOPE_MAX_PICKLE_BYTES"), "{err}");
    }

    #[test]
    fn unsupported_storage_types_are_named() {
        let data = b"\x80\x02ctorch\nFloat8_e4m3fnStorage\n.";
        let err = read(&mut &data[..], &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Float8_e4m3fnStorage") && !err.contains("refusing"),
            "{err}"
        );
    }

    #[test]
    fn big_longs_do_not_overflow() {
        let data = b"\x80\x02\x8a\x0alp\x9cF\xf9 j\xa8P\x19.";
        assert!(
            matches!(read(&mut &data[..], &Limits::default()).unwrap(), Value::Bytes(b) if b.len() == 10)
        );
    }
}
