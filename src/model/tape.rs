//! The backward pass of a network's trunk run by the trunk's own ops, for passes that
//! hold the input gradient at the stem.
//!
//! Candle's backward pass adds the gradient that each op sends to an input into a
//! zero tensor of that input's size (`GradStore::or_insert`, then `add`): a memset
//! on the calling thread and a sum, for every edge of the graph. On ResNet-18 those
//! ran while rayon's workers waited: in a SmoothGrad profile each worker sat idle
//! ~14% of the wall time, most of it there.
//!
//! A pass that holds its input gradient at the stem ([`super::trace::Trace::stem`])
//! on the CPU records its trunk here instead: each op's value is computed off the
//! graph and the op's backward step is kept. The tensors that leave the trunk (its
//! output, for the head, and every recorded layer, for the objective) go onto
//! Candle's graph through a relay each ([`Held::relay`]), whose backward only keeps
//! the gradient arriving there. After Candle's pass, [`Taped::run`] runs the steps
//! in reverse once, from all those gradients together: each step hands its
//! gradients to the steps before it directly; only a tensor read twice (a residual
//! block's input, a recorded layer the trunk goes on from) gets a sum.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Result, bail, ensure};
use candle_core::{Tensor, TensorId};

use super::ops::Held;

/// An op's backward step: the gradients of its inputs, in order, given the
/// gradient at its output.
pub(crate) type Step = Box<dyn Fn(&Tensor) -> Result<Vec<Tensor>> + Send + Sync>;

/// An op on the tape: what it read, what it computed, and its backward step.
struct Recorded {
    inputs: Vec<TensorId>,
    output: TensorId,
    backward: Step,
}

/// The gradients that Candle's backward pass brought to the tape's exits.
type Arrivals = Arc<Mutex<Vec<(TensorId, Tensor)>>>;

/// A pass's tape ([`self`]).
pub(crate) struct Tape(State);

/// Where a pass stands with its tape.
enum State {
    /// Recording: `values` are the tensors that the steps compute, and the start.
    Recording {
        taped: Taped,
        values: HashSet<TensorId>,
    },
    /// The trunk's output went onto Candle's graph; the values stay known, so that
    /// an op reading one afterwards is an error, not a gradient lost.
    Ended { values: HashSet<TensorId> },
}

/// A recorded trunk: its steps from the hold's output (`start`), to run backward
/// once Candle's pass has brought the gradients to its exits ([`Taped::run`]).
pub(crate) struct Taped {
    start: TensorId,
    steps: Vec<Recorded>,
    arrivals: Arrivals,
}

impl Tape {
    /// A tape starting at `start`, the hold's output.
    pub(crate) fn new(start: &Tensor) -> Self {
        Tape(State::Recording {
            taped: Taped {
                start: start.id(),
                steps: Vec::new(),
                arrivals: Arrivals::default(),
            },
            values: HashSet::from([start.id()]),
        })
    }

    /// Whether an op of `inputs` belongs on the tape: all of them are its values.
    /// None of them is: the op is not the tape's. Some of them are, or the tape has
    /// ended: an error, since a gradient would be lost.
    pub(crate) fn takes(&self, inputs: &[&Tensor]) -> Result<bool> {
        let (values, ended) = match &self.0 {
            State::Recording { values, .. } => (values, false),
            State::Ended { values } => (values, true),
        };
        let on = inputs.iter().filter(|x| values.contains(&x.id())).count();
        match (on, ended) {
            (0, _) => Ok(false),
            (_, true) => bail!(
                "the network's head read a tensor of its trunk other than the trunk's \
                 output; `Network::trunk` must return everything the head reads"
            ),
            (on, false) if on == inputs.len() => Ok(true),
            _ => bail!(
                "a trunk op mixed traced tensors with one computed outside the trace; \
                 every op of `Network::trunk` must go through the `Trace` \
                 (`Trace::record` takes an op of your own)"
            ),
        }
    }

    /// Records the op that computed `output` from `inputs` (all the tape's, see
    /// [`Tape::takes`]), with its backward step.
    pub(crate) fn record(&mut self, inputs: &[&Tensor], output: &Tensor, backward: Step) {
        if let State::Recording { taped, values } = &mut self.0 {
            values.insert(output.id());
            taped.steps.push(Recorded {
                inputs: inputs.iter().map(|x| x.id()).collect(),
                output: output.id(),
                backward,
            });
        }
    }

    /// `x`, one of the tape's values, on Candle's graph for a reader off the tape (a
    /// recorded layer's objective, the head): a copy hung on `held`'s anchor, whose
    /// backward keeps the gradient arriving at it for [`Taped::run`].
    pub(crate) fn exit(&mut self, x: &Tensor, held: &Held) -> Result<Tensor> {
        let State::Recording { taped, values } = &self.0 else {
            bail!("internal: an exit from a tape that has ended");
        };
        ensure!(
            values.contains(&x.id()),
            "`Network::trunk` returned a tensor the trace did not compute; \
             every op of the trunk must go through the `Trace`"
        );
        let (arrivals, id) = (taped.arrivals.clone(), x.id());
        Ok(held.relay(
            x,
            Box::new(move |grad| {
                let mut arrived = arrivals.lock().unwrap_or_else(PoisonError::into_inner);
                arrived.push((id, grad.clone()));
            }),
        )?)
    }

    /// Ends the tape at `x`, the trunk's output: `x` on Candle's graph (an exit),
    /// and the recorded trunk to run after Candle's backward pass.
    pub(crate) fn end(&mut self, x: &Tensor, held: &Held) -> Result<(Tensor, Taped)> {
        let x = self.exit(x, held)?;
        Ok((x, self.finish()?))
    }

    /// Ends the tape where it stands (a pass stopped before the trunk's end): the
    /// recorded trunk to run after Candle's backward pass.
    pub(crate) fn finish(&mut self) -> Result<Taped> {
        let ended = State::Ended {
            values: HashSet::new(),
        };
        let State::Recording { taped, values } = std::mem::replace(&mut self.0, ended) else {
            bail!("internal: the tape ended twice");
        };
        self.0 = State::Ended { values };
        Ok(taped)
    }
}

impl Taped {
    /// Runs the steps in reverse from the gradients Candle's last backward pass
    /// brought to the exits (a step whose output no gradient reached is skipped),
    /// leaving the gradient at the start with `held`. Returns the gradient at each
    /// tensor of `keep` that one reached: a recorded layer's, from its own exit and
    /// from the trunk after it.
    pub(crate) fn run(
        &self,
        held: &Held,
        keep: &HashSet<TensorId>,
    ) -> Result<HashMap<TensorId, Tensor>> {
        let arrived =
            std::mem::take(&mut *self.arrivals.lock().unwrap_or_else(PoisonError::into_inner));
        let mut grads = HashMap::new();
        for (id, grad) in arrived {
            add(&mut grads, id, grad)?;
        }
        let mut kept = HashMap::new();
        for step in self.steps.iter().rev() {
            let Some(grad) = grads.remove(&step.output) else {
                continue;
            };
            if keep.contains(&step.output) {
                kept.insert(step.output, grad.clone());
            }
            let input_grads = (step.backward)(&grad)?;
            ensure!(
                input_grads.len() == step.inputs.len(),
                "internal: a tape step gave {} gradients for {} inputs",
                input_grads.len(),
                step.inputs.len()
            );
            for (&input, g) in step.inputs.iter().zip(input_grads) {
                add(&mut grads, input, g)?;
            }
        }
        if let Some(grad) = grads.remove(&self.start) {
            if keep.contains(&self.start) {
                kept.insert(self.start, grad.clone());
            }
            held.leave(grad)?;
        }
        ensure!(
            grads.is_empty(),
            "internal: the tape left gradients at {} tensors that are not its start",
            grads.len()
        );
        Ok(kept)
    }
}

/// Adds `grad` to the gradient at `id` so far.
fn add(grads: &mut HashMap<TensorId, Tensor>, id: TensorId, grad: Tensor) -> Result<()> {
    match grads.entry(id) {
        Entry::Occupied(mut sum) => {
            let total = (sum.get() + grad)?;
            sum.insert(total);
        }
        Entry::Vacant(slot) => {
            slot.insert(grad);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::model::ops::hold_off_graph;

    /// `k · x` as a tape step.
    fn scale(tape: &mut Tape, x: &Tensor, k: f64) -> Tensor {
        let y = (x * k).unwrap();
        assert!(tape.takes(&[x]).unwrap());
        tape.record(&[x], &y, Box::new(move |g| Ok(vec![(g * k)?])));
        y
    }

    /// A start read twice, by two steps whose outputs meet again: the gradient at
    /// the start is the sum over both paths, run after Candle's backward pass
    /// brought the gradient to the tape's end.
    #[test]
    fn the_tape_carries_the_gradient_back_to_its_start() {
        let x = Tensor::new(&[1f32, -2., 3.], &Device::Cpu).unwrap();
        let (start, held) = hold_off_graph(&x, None).unwrap();
        let mut tape = Tape::new(&start);
        let (a, b) = (scale(&mut tape, &start, 2.0), scale(&mut tape, &start, 3.0));
        let sum = (&a + &b).unwrap();
        tape.record(
            &[&a, &b],
            &sum,
            Box::new(|g| Ok(vec![g.clone(), (g * 0.5)?])),
        );
        // A step whose output nothing reads is skipped.
        scale(&mut tape, &a, 7.0);
        let (out, taped) = tape.end(&sum, &held).unwrap();
        let weights = Tensor::new(&[1f32, 10., 100.], &Device::Cpu).unwrap();
        out.mul(&weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        taped.run(&held, &HashSet::new()).unwrap();
        let grad = held.take().unwrap().to_vec1::<f32>().unwrap();
        // d/dstart of (2 start + 0.5 · 3 start) · weights = 3.5 · weights.
        assert_eq!(grad, [3.5, 35., 350.]);
    }

    /// A recorded layer leaves the tape through an exit of its own while the trunk
    /// goes on from it: its gradient, and the start's, sum what arrives at its exit
    /// and what comes back from the trunk's end.
    #[test]
    fn a_recorded_layer_gets_its_own_gradient_and_the_trunks() {
        let x = Tensor::new(&[1f32, -2.], &Device::Cpu).unwrap();
        let (start, held) = hold_off_graph(&x, None).unwrap();
        let mut tape = Tape::new(&start);
        let a = scale(&mut tape, &start, 2.0);
        let a_out = tape.exit(&a, &held).unwrap();
        let b = scale(&mut tape, &a, 3.0);
        let (b_out, taped) = tape.end(&b, &held).unwrap();
        // objective = 5 · sum(a) + sum(b) = 5 · sum(a) + 3 · sum(a)
        ((a_out * 5.0).unwrap() + b_out)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let kept = taped.run(&held, &HashSet::from([a.id()])).unwrap();
        assert_eq!(kept[&a.id()].to_vec1::<f32>().unwrap(), [8., 8.]);
        assert_eq!(held.take().unwrap().to_vec1::<f32>().unwrap(), [16., 16.]);
        // Nothing arrived: nothing runs, and the start's gradient is zero.
        let kept = taped.run(&held, &HashSet::from([a.id()])).unwrap();
        assert!(kept.is_empty());
        assert_eq!(held.take().unwrap().to_vec1::<f32>().unwrap(), [0., 0.]);
    }

    /// Ops that would lose a gradient are errors: mixing the tape's values with
    /// other tensors, reading a value after the tape ended, or a trunk that ends at
    /// a tensor that is not the tape's.
    #[test]
    fn a_tape_refuses_to_lose_a_gradient() {
        let x = Tensor::new(&[1f32, 2.], &Device::Cpu).unwrap();
        let (start, held) = hold_off_graph(&x, None).unwrap();
        let mut tape = Tape::new(&start);
        let other = Tensor::new(&[3f32, 4.], &Device::Cpu).unwrap();
        assert!(!tape.takes(&[&other]).unwrap());
        let err = tape.takes(&[&start, &other]).unwrap_err();
        assert!(err.to_string().contains("mixed"), "{err}");
        let y = scale(&mut tape, &start, 2.0);
        let Err(err) = Tape::new(&start).end(&other, &held) else {
            panic!("a tape ended at a tensor it did not compute");
        };
        assert!(err.to_string().contains("did not compute"), "{err}");
        tape.end(&y, &held).unwrap();
        let err = tape.takes(&[&y]).unwrap_err();
        assert!(err.to_string().contains("other than the trunk's"), "{err}");
    }
}
