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
//! on the CPU, recording no layers, records its trunk here instead: each op's value
//! is computed off the graph and the op's backward step is kept. At the trunk's end
//! ([`super::trace::Network::trunk`]'s output) the engine puts it back onto Candle's
//! graph through one op hung on the hold ([`Held::relay`]), whose backward runs the
//! steps in reverse. Each step hands its gradients to the steps before it
//! directly; only a tensor read twice (a residual block's input) gets a sum.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use candle_core::{Tensor, TensorId};

use super::ops::{Held, Step};

/// An op on the tape: what it read, what it computed, and its backward step.
struct Recorded {
    inputs: Vec<TensorId>,
    output: TensorId,
    backward: Step,
}

/// The steps of a trunk: from the hold's output (`start`) to the trunk's output.
struct Steps {
    start: TensorId,
    steps: Vec<Recorded>,
}

/// A pass's tape ([`self`]).
pub(crate) struct Tape(State);

/// Where a pass stands with its tape.
enum State {
    /// Recording: `values` are the tensors that the steps compute, and the start.
    Recording {
        steps: Steps,
        values: HashSet<TensorId>,
    },
    /// The trunk's output went back onto Candle's graph; the values stay known, so
    /// that an op reading one afterwards is an error, not a gradient lost.
    Ended { values: HashSet<TensorId> },
}

impl Tape {
    /// A tape starting at `start`, the hold's output.
    pub(crate) fn new(start: &Tensor) -> Self {
        Tape(State::Recording {
            steps: Steps {
                start: start.id(),
                steps: Vec::new(),
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
        if let State::Recording { steps, values } = &mut self.0 {
            values.insert(output.id());
            steps.steps.push(Recorded {
                inputs: inputs.iter().map(|x| x.id()).collect(),
                output: output.id(),
                backward,
            });
        }
    }

    /// Ends the tape at `x`, the trunk's output: `x` back on Candle's graph, whose
    /// backward runs the steps and leaves the gradient at the start with `held`.
    pub(crate) fn end(&mut self, x: &Tensor, held: &Held) -> Result<Tensor> {
        let ended = State::Ended {
            values: HashSet::new(),
        };
        let State::Recording { steps, values } = std::mem::replace(&mut self.0, ended) else {
            bail!("internal: the tape ended twice");
        };
        ensure!(
            values.contains(&x.id()),
            "`Network::trunk` returned a tensor the trace did not compute; \
             every op of the trunk must go through the `Trace`"
        );
        let (steps, end) = (Arc::new(steps), x.id());
        let x = held.relay(
            x,
            Box::new(move |grad| Ok(steps.run(end, grad)?.into_iter().collect())),
        )?;
        self.0 = State::Ended { values };
        Ok(x)
    }
}

impl Steps {
    /// The gradient at the start, given `grad` at the value `end`: the steps in
    /// reverse, each taking the gradient at its output (a step whose output nothing
    /// downstream read is skipped). `None` if no gradient reached the start.
    fn run(&self, end: TensorId, grad: &Tensor) -> Result<Option<Tensor>> {
        let mut grads = HashMap::from([(end, grad.clone())]);
        for step in self.steps.iter().rev() {
            let Some(grad) = grads.remove(&step.output) else {
                continue;
            };
            let input_grads = (step.backward)(&grad)?;
            ensure!(
                input_grads.len() == step.inputs.len(),
                "internal: a tape step gave {} gradients for {} inputs",
                input_grads.len(),
                step.inputs.len()
            );
            for (&input, g) in step.inputs.iter().zip(input_grads) {
                match grads.entry(input) {
                    Entry::Occupied(mut sum) => {
                        let total = (sum.get() + g)?;
                        sum.insert(total);
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(g);
                    }
                }
            }
        }
        let at_start = grads.remove(&self.start);
        ensure!(
            grads.is_empty(),
            "internal: the tape left gradients at {} tensors that are not its start",
            grads.len()
        );
        Ok(at_start)
    }
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
    /// the start is the sum over both paths, and Candle's backward pass reaches it
    /// through the one op at the tape's end.
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
        let out = tape.end(&sum, &held).unwrap();
        let weights = Tensor::new(&[1f32, 10., 100.], &Device::Cpu).unwrap();
        out.mul(&weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad = held.take().unwrap().to_vec1::<f32>().unwrap();
        // d/dstart of (2 start + 0.5 · 3 start) · weights = 3.5 · weights.
        assert_eq!(grad, [3.5, 35., 350.]);
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
        let err = Tape::new(&start).end(&other, &held).unwrap_err();
        assert!(err.to_string().contains("did not compute"), "{err}");
        tape.end(&y, &held).unwrap();
        let err = tape.takes(&[&y]).unwrap_err();
        assert!(err.to_string().contains("other than the trunk's"), "{err}");
    }
}
