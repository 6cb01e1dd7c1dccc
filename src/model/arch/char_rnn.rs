//! Character-level recurrent language models, as Karpathy, Johnson & Fei-Fei
//! (2015), "Visualizing and Understanding Recurrent Networks", study them: an
//! embedding, a stack of LSTM or GRU layers, and a linear read-out that predicts
//! the next character. Names as a PyTorch module of `nn.Embedding` `embedding`,
//! `nn.LSTM`/`nn.GRU` `rnn` (`batch_first`) and `nn.Linear` `fc` names them:
//! `embedding.weight`, `rnn.weight_ih_l{k}`, `rnn.weight_hh_l{k}`,
//! `rnn.bias_ih_l{k}`, `rnn.bias_hh_l{k}`, `fc.weight`, `fc.bias`.
//!
//! PyTorch's equations and gate order (rows of `weight_ih` and `weight_hh`), with
//! `x` a step's input, `h` and `c` the previous step's states (zero at the start):
//!
//! - LSTM (`i, f, g, o`): `i = σ(W_ii x + b_ii + W_hi h + b_hi)`, `f` and `o` alike,
//!   `g = tanh(W_ig x + b_ig + W_hg h + b_hg)`; `c' = f ⊙ c + i ⊙ g`,
//!   `h' = o ⊙ tanh(c')`.
//! - GRU (`r, z, n`): `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z` alike,
//!   `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`; `h' = (1 − z) ⊙ n + z ⊙ h`.
//!
//! The input is the text one-hot, `[N, V, 1, T]` for `V` characters and `T` steps:
//! an image one pixel high with a channel per character, so every method, search and
//! view of the engine takes it as it is. The embedding is then a product with the
//! one-hot, so the input gradient at a character's channel is the gradient at its
//! embedding dotted with the embedding: gradient × input and integrated gradients
//! (from the zero baseline) on the one-hot are exactly those methods over the
//! embedding, summed over its dimensions.
//!
//! Layers, each `[units, 1, T]` (a unit's value at every step): `embedding`,
//! `rnn.{k}` (the hidden states of layer `k`), `rnn.{k}.cell` (an LSTM's cell
//! states, the ones Karpathy et al. draw), and `fc`, the logits of the character
//! after the last. The gradient at a recorded layer is what reaches it from the
//! layers above, as a hook on `nn.LSTM`'s output sees it, not what reaches it
//! through its own recurrence; an objective on a unit at a step back-propagates
//! through time to the input.

use anyhow::{Result, ensure};
use candle_core::{D, IndexOp, Tensor};
use candle_nn::ops::sigmoid;

use super::entry::{Architecture, Entry};
use crate::model::layer::LayerKind;
use crate::model::nn::Linear;
use crate::model::trace::{Network, Trace};
use crate::model::weights::WeightPath;

/// The character models; sizes are the card's to set.
pub(super) const ENTRY: Entry = Entry {
    architectures: &[Architecture::CharLstm, Architecture::CharGru],
    options: &[
        (
            "embedding",
            "dimensions of a character's embedding (default 32)",
        ),
        ("hidden", "units of each recurrent layer (default 128)"),
        ("layers", "recurrent layers (default 1)"),
    ],
    build: |architecture, w, options, classes| {
        let cell = match architecture {
            Architecture::CharGru => Cell::Gru,
            _ => Cell::Lstm,
        };
        let size = Sizes {
            characters: classes,
            embedding: options.embedding.unwrap_or(32),
            hidden: options.hidden.unwrap_or(128),
            layers: options.layers.unwrap_or(1),
        };
        Ok(Box::new(CharRnn::load(w, cell, size)?))
    },
};

/// The recurrent cell of every layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Long short-term memory (Hochreiter & Schmidhuber 1997), PyTorch's `nn.LSTM`.
    Lstm,
    /// Gated recurrent unit (Cho et al. 2014), PyTorch's `nn.GRU`.
    Gru,
}

impl Cell {
    /// Gates per unit: the rows of its weights are this many blocks of `hidden`.
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// A character model's sizes.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// The alphabet: input channels and classes alike.
    pub characters: usize,
    /// Embedding dimensions.
    pub embedding: usize,
    /// Units per recurrent layer.
    pub hidden: usize,
    /// Recurrent layers.
    pub layers: usize,
}

/// A character-level LSTM or GRU language model.
pub struct CharRnn {
    /// `[V, E]`, a row per character.
    embedding: Tensor,
    layers: Vec<Recurrent>,
    fc: Linear,
}

impl CharRnn {
    /// Loads the model of `cell`s and `size`.
    pub fn load(w: &WeightPath, cell: Cell, size: Sizes) -> Result<Self> {
        ensure!(
            size.layers >= 1 && size.hidden >= 1 && size.embedding >= 1,
            "a character model needs at least one layer, unit and embedding dimension"
        );
        let embedding = w
            .pp("embedding")
            .get("weight", &[size.characters, size.embedding])?;
        let layers = (0..size.layers)
            .map(|k| {
                let input = if k == 0 { size.embedding } else { size.hidden };
                Recurrent::load(&w.pp("rnn"), cell, k, input, size.hidden)
            })
            .collect::<Result<_>>()?;
        let fc = Linear::load(&w.pp("fc"), size.hidden, size.characters)?;
        Ok(Self {
            embedding,
            layers,
            fc,
        })
    }

    /// The last layer's hidden states, `[N, T, H]`, from the one-hot `x`.
    fn states(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let (n, v, one, steps) = x.dims4()?;
        let characters = self.embedding.dim(0)?;
        ensure!(
            one == 1 && v == characters && steps >= 1,
            "a character model of {characters} characters takes one-hot text [N, {characters}, 1, T], \
             got {:?}",
            x.dims()
        );
        let onehot = x.squeeze(2)?.transpose(1, 2)?.contiguous()?;
        let embedded = onehot
            .reshape((n * steps, v))?
            .matmul(&self.embedding)?
            .reshape((n, steps, ()))?;
        let mut sequence =
            from_map(&t.tap("embedding", LayerKind::Embedding, to_map(&embedded)?)?)?;
        for (k, layer) in self.layers.iter().enumerate() {
            let name = format!("rnn.{k}");
            let states = layer.run(&sequence)?;
            let hidden = match states.cells {
                // The hidden states recomputed from the recorded cells, so that the
                // cells' gradient is what reaches them through the output.
                Some((cells, outputs)) if t.needs(&format!("{name}.cell")) => {
                    let cells = t.tap(
                        &format!("{name}.cell"),
                        LayerKind::CellState,
                        to_map(&cells)?,
                    )?;
                    (outputs * from_map(&cells)?.tanh()?)?
                }
                _ => states.hidden,
            };
            sequence = from_map(&t.tap(&name, LayerKind::Recurrent, to_map(&hidden)?)?)?;
        }
        Ok(sequence)
    }
}

impl Network for CharRnn {
    fn trunk(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        self.states(x, t)
    }

    fn head(&self, states: &Tensor, t: &mut Trace) -> Result<Tensor> {
        // Packed rows: Candle's CUDA matmul refuses a row stride wider than the row.
        let last = states.i((.., states.dim(1)? - 1))?.contiguous()?;
        t.tap("fc", LayerKind::Linear, self.fc.forward(&last)?)
    }

    fn every_step(&self, x: &Tensor, t: &mut Trace) -> Result<Option<Tensor>> {
        let states = self.states(x, t)?;
        let (n, steps, hidden) = states.dims3()?;
        let logits = self.fc.forward(&states.reshape((n * steps, hidden))?)?;
        Ok(Some(logits.reshape((n, steps, ()))?.transpose(1, 2)?))
    }
}

/// `[N, T, C]` as a layer's map, `[N, C, 1, T]`.
fn to_map(sequence: &Tensor) -> Result<Tensor> {
    Ok(sequence.transpose(1, 2)?.unsqueeze(2)?)
}

/// A layer's map `[N, C, 1, T]` as a sequence, `[N, T, C]`.
fn from_map(map: &Tensor) -> Result<Tensor> {
    Ok(map.squeeze(2)?.transpose(1, 2)?.contiguous()?)
}

/// One recurrent layer.
struct Recurrent {
    cell: Cell,
    /// `[in, gates * H]`: `weight_ih` transposed, to multiply from the right.
    w_ih: Tensor,
    /// `[H, gates * H]`: `weight_hh` transposed.
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

/// What a layer computed over a sequence, each `[N, T, H]`.
struct States {
    hidden: Tensor,
    /// An LSTM's cell states and output gates.
    cells: Option<(Tensor, Tensor)>,
}

impl Recurrent {
    fn load(w: &WeightPath, cell: Cell, k: usize, input: usize, hidden: usize) -> Result<Self> {
        let rows = cell.gates() * hidden;
        Ok(Self {
            cell,
            w_ih: w.get(&format!("weight_ih_l{k}"), &[rows, input])?.t()?,
            w_hh: w.get(&format!("weight_hh_l{k}"), &[rows, hidden])?.t()?,
            b_ih: w.get(&format!("bias_ih_l{k}"), &[rows])?,
            b_hh: w.get(&format!("bias_hh_l{k}"), &[rows])?,
            hidden,
        })
    }

    /// Runs over `x`, `[N, T, in]`, from zero states.
    fn run(&self, x: &Tensor) -> Result<States> {
        let (n, steps, input) = x.dims3()?;
        let h = self.hidden;
        // Every step's input projection in one product; the recurrence is the rest.
        let projected = x
            .reshape((n * steps, input))?
            .matmul(&self.w_ih)?
            .broadcast_add(&self.b_ih)?
            .reshape((n, steps, ()))?;
        let mut state = Tensor::zeros((n, h), x.dtype(), x.device())?;
        let mut cell = state.clone();
        let (mut hidden, mut cells, mut outputs) = (Vec::new(), Vec::new(), Vec::new());
        for step in 0..steps {
            let from_input = projected.i((.., step))?;
            let from_state = state.matmul(&self.w_hh)?.broadcast_add(&self.b_hh)?;
            match self.cell {
                Cell::Lstm => {
                    let gates = (from_input + from_state)?;
                    let open = sigmoid(&gates)?;
                    let (i, f, o) = (
                        open.narrow(D::Minus1, 0, h)?,
                        open.narrow(D::Minus1, h, h)?,
                        open.narrow(D::Minus1, 3 * h, h)?,
                    );
                    let g = gates.narrow(D::Minus1, 2 * h, h)?.tanh()?;
                    cell = ((f * &cell)? + (i * g)?)?;
                    state = (&o * cell.tanh()?)?;
                    cells.push(cell.clone());
                    outputs.push(o);
                }
                Cell::Gru => {
                    let open = sigmoid(
                        &(from_input.narrow(D::Minus1, 0, 2 * h)?
                            + from_state.narrow(D::Minus1, 0, 2 * h)?)?,
                    )?;
                    let (r, z) = (open.narrow(D::Minus1, 0, h)?, open.narrow(D::Minus1, h, h)?);
                    let n = (from_input.narrow(D::Minus1, 2 * h, h)?
                        + (r * from_state.narrow(D::Minus1, 2 * h, h)?)?)?
                    .tanh()?;
                    // (1 - z) n + z h, as n + z (h - n).
                    state = (&n + (z * (&state - &n)?)?)?;
                }
            }
            hidden.push(state.clone());
        }
        let cells = match self.cell {
            Cell::Lstm => Some((Tensor::stack(&cells, 1)?, Tensor::stack(&outputs, 1)?)),
            Cell::Gru => None,
        };
        Ok(States {
            hidden: Tensor::stack(&hidden, 1)?,
            cells,
        })
    }
}
