//! The host's side of a call into a plugin: the [`UsHost`] table whose callbacks
//! run the engine (forward passes, gradients under a rule) for the plugin. Every
//! callback checks what the plugin sent, catches the host's own panics, and
//! answers with a status and, on failure, text the plugin frees.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::{Context as _, Result, bail, ensure};
use candle_core::{DType, Tensor};
use unitscope_sdk::abi::{
    ABI_MINOR, RULE_DECONVNET, RULE_GRADIENT, RULE_GUIDED_BACKPROP, TARGET_CLASS, TARGET_UNIT,
    TARGET_WEIGHTED, US_ERROR, US_OK, UsHost, UsLayerInfo, UsModelInfo, UsStr, UsTarget, UsTensor,
    UsText, fill_sized,
};

use crate::attribution::Target;
use crate::model::{BackwardRule, Model, Objective, Probe, UnitAddress};

/// What the callbacks of one call reach: the model, its layer names and kinds as
/// text that stays put for the call, and the last error a callback answered (so
/// that a plugin passing the host's own error on is not blamed for it).
pub struct Context<'a> {
    model: &'a Model,
    layers: Vec<(String, String, Vec<usize>)>,
    failed: std::sync::Mutex<Option<String>>,
}

impl<'a> Context<'a> {
    /// The host side for calls on `model`.
    pub fn new(model: &'a Model) -> Result<Self> {
        let layers = model
            .layers()?
            .iter()
            .map(|l| (l.name.clone(), l.kind.to_string(), l.shape.clone()))
            .collect();
        Ok(Self {
            model,
            layers,
            failed: std::sync::Mutex::new(None),
        })
    }

    /// The last error a callback answered with, taken.
    pub fn host_failure(&self) -> Option<String> {
        self.failed.lock().ok()?.take()
    }

    /// The table handed to the plugin; valid while `self` is.
    pub fn table(&self) -> UsHost {
        UsHost {
            size: size_of::<UsHost>() as u32,
            abi_minor: ABI_MINOR,
            ctx: std::ptr::from_ref(self).cast_mut().cast::<c_void>(),
            model: model_info,
            layer: layer_info,
            forward,
            gradient,
            cancelled,
        }
    }
}

/// Runs a callback's body for the plugin: its error, or a panic of the host's, as
/// [`US_ERROR`] with text (remembered in the context).
fn answer(ctx: *mut c_void, error: *mut UsText, body: impl FnOnce(&Context) -> Result<()>) -> i32 {
    // SAFETY: the pointer `Context::table` put in the table, during the call.
    let cx = unsafe { &*ctx.cast::<Context>() };
    let message = match catch_unwind(AssertUnwindSafe(|| body(cx))) {
        Ok(Ok(())) => return US_OK,
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => "the host failed inside a plugin's call (a bug in unitscope)".to_owned(),
    };
    if let Ok(mut failed) = cx.failed.lock() {
        *failed = Some(message.clone());
    }
    if !error.is_null() {
        // SAFETY: the plugin's slot for the text.
        unsafe { error.write(text(&message)) };
    }
    US_ERROR
}

unsafe extern "C" fn model_info(
    ctx: *mut c_void,
    out: *mut UsModelInfo,
    error: *mut UsText,
) -> i32 {
    answer(ctx, error, |cx| {
        let [height, width] = cx.model.input_spec().size;
        ensure!(!out.is_null(), "no place for the model's info");
        let info = UsModelInfo {
            size: size_of::<UsModelInfo>() as u32,
            name: UsStr::new(cx.model.name()),
            channels: 3,
            height: height as u64,
            width: width as u64,
            classes: cx.model.labels().len() as u64,
            layers: cx.layers.len() as u64,
        };
        // SAFETY: the plugin's slot, sized by the plugin.
        unsafe { fill_sized(out, info) };
        Ok(())
    })
}

unsafe extern "C" fn layer_info(
    ctx: *mut c_void,
    index: u64,
    out: *mut UsLayerInfo,
    error: *mut UsText,
) -> i32 {
    answer(ctx, error, |cx| {
        let Some((name, kind, shape)) = cx.layers.get(index as usize) else {
            bail!(
                "there is no layer {index}: the model has {}",
                cx.layers.len()
            );
        };
        ensure!(!out.is_null(), "no place for the layer's info");
        let mut dims = [0; unitscope_sdk::abi::MAX_RANK];
        for (d, &n) in dims.iter_mut().zip(shape) {
            *d = n as u64;
        }
        let info = UsLayerInfo {
            size: size_of::<UsLayerInfo>() as u32,
            name: UsStr::new(name),
            kind: UsStr::new(kind),
            rank: shape.len() as u32,
            dims,
        };
        // SAFETY: the plugin's slot, sized by the plugin.
        unsafe { fill_sized(out, info) };
        Ok(())
    })
}

unsafe extern "C" fn forward(
    ctx: *mut c_void,
    inputs: *const UsTensor,
    layers: *const UsStr,
    n_layers: usize,
    logits: *mut UsTensor,
    recorded: *mut UsTensor,
    error: *mut UsText,
) -> i32 {
    answer(ctx, error, |cx| {
        let x = cx.input(inputs)?;
        let names = unsafe { names(layers, n_layers) }?;
        let probe = names
            .iter()
            .fold(Probe::new().values_only(), |p, l| p.record(l.as_str()));
        let capture = cx.model.forward(&x, &probe)?;
        let outputs = std::iter::once(capture.logits()?.clone())
            .chain(
                names
                    .iter()
                    .map(|l| capture.activation(l).cloned())
                    .collect::<Result<Vec<_>>>()?,
            )
            .map(|t| hand_over(&t))
            .collect::<Result<Vec<_>>>()?;
        unsafe { write_outputs(outputs, logits, recorded, n_layers) }
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn gradient(
    ctx: *mut c_void,
    inputs: *const UsTensor,
    targets: *const UsTarget,
    n_targets: usize,
    rule: u32,
    layers: *const UsStr,
    n_layers: usize,
    input_gradient: *mut UsTensor,
    layer_gradients: *mut UsTensor,
    error: *mut UsText,
) -> i32 {
    answer(ctx, error, |cx| {
        let x = cx.input(inputs)?;
        let n = x.dim(0)?;
        ensure!(
            n_targets == n && !targets.is_null(),
            "{n_targets} targets for a batch of {n} inputs"
        );
        let targets = unsafe { std::slice::from_raw_parts(targets, n_targets) };
        let objectives = targets
            .iter()
            .map(|t| unsafe { objective(t, cx.model.labels().len()) })
            .collect::<Result<Vec<_>>>()?;
        let names = unsafe { names(layers, n_layers) }?;
        let rule = match rule {
            RULE_GRADIENT => BackwardRule::Gradient,
            RULE_GUIDED_BACKPROP => BackwardRule::GuidedBackprop,
            RULE_DECONVNET => BackwardRule::DeconvNet,
            other => bail!("unknown backward rule {other}"),
        };
        let probe = names
            .iter()
            .map(String::as_str)
            .chain(objectives.iter().filter_map(|(_, layer)| layer.as_deref()))
            .fold(Probe::new().rule(rule), |p, l| p.record(l));
        let capture = cx.model.forward(&x, &probe)?;
        let objective = Objective::PerSample(objectives.into_iter().map(|(o, _)| o).collect());
        let grads = capture.backward(&capture.objective(&objective)?)?;
        let outputs = std::iter::once(grads.input())
            .chain(names.iter().map(|l| grads.layer(l).cloned()))
            .map(|t| hand_over(&t?))
            .collect::<Result<Vec<_>>>()?;
        unsafe { write_outputs(outputs, input_gradient, layer_gradients, n_layers) }
    })
}

unsafe extern "C" fn cancelled(_ctx: *mut c_void) -> i32 {
    i32::from(crate::jobs::checkpoint().is_err())
}

impl Context<'_> {
    /// The plugin's batch as the model's input, `[N, 3, H, W]` on its device.
    fn input(&self, inputs: *const UsTensor) -> Result<Tensor> {
        ensure!(!inputs.is_null(), "no inputs");
        // SAFETY: the plugin's tensor, valid for the call.
        let inputs = unsafe { &*inputs };
        let dims = inputs
            .shape()
            .map_err(|e| anyhow::anyhow!("the plugin sent {e}"))?;
        let [n, c, h, w] = dims[..] else {
            bail!("inputs of shape {dims:?}, not [N, C, H, W]");
        };
        let [height, width] = self.model.input_spec().size;
        ensure!(
            n > 0 && c == 3 && (h, w) == (height, width),
            "inputs of shape {dims:?}; the model takes [N, 3, {height}, {width}]"
        );
        let values =
            unsafe { inputs.values() }.map_err(|e| anyhow::anyhow!("the plugin sent {e}"))?;
        ensure!(
            values.iter().all(|v| v.is_finite()),
            "inputs that are NaN or infinite"
        );
        Ok(Tensor::from_slice(values, dims, self.model.device())?)
    }
}

/// A target the plugin sent, as the engine's objective, with the layer a pass
/// must record for it.
///
/// # Safety
/// `t`'s text and weights are valid for the call.
unsafe fn objective(t: &UsTarget, classes: usize) -> Result<(Objective, Option<String>)> {
    Ok(match t.kind {
        TARGET_CLASS => {
            let c = t.class_index as usize;
            ensure!(c < classes, "class {c} of a model with {classes}");
            (Target::Class(c).objective(), None)
        }
        TARGET_UNIT => {
            let layer =
                unsafe { t.layer.to_str() }.map_err(|e| anyhow::anyhow!("a layer name: {e}"))?;
            let unit = UnitAddress {
                layer: layer.to_owned(),
                channel: t.channel as usize,
                position: (t.has_position != 0).then_some((t.y as usize, t.x as usize)),
            };
            (Target::Unit(unit).objective(), Some(layer.to_owned()))
        }
        TARGET_WEIGHTED => {
            ensure!(
                t.n_weights == classes && !t.weights.is_null(),
                "{} weights for a model with {classes} classes",
                t.n_weights
            );
            let weights = unsafe { std::slice::from_raw_parts(t.weights, t.n_weights) };
            ensure!(
                weights.iter().all(|w| w.is_finite()),
                "weights that are NaN"
            );
            let terms = weights
                .iter()
                .enumerate()
                .map(|(c, &w)| (w as f64, Objective::Logit(c)))
                .collect();
            (Objective::Weighted(terms), None)
        }
        other => bail!("a target of unknown kind {other}"),
    })
}

/// The layer names the plugin sent.
///
/// # Safety
/// `layers` points to `n` names valid for the call.
unsafe fn names(layers: *const UsStr, n: usize) -> Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    ensure!(!layers.is_null(), "{n} layer names and no pointer to them");
    unsafe { std::slice::from_raw_parts(layers, n) }
        .iter()
        .map(|s| {
            let s = unsafe { s.to_str() }.map_err(|e| anyhow::anyhow!("a layer name: {e}"))?;
            Ok(s.to_owned())
        })
        .collect()
}

/// A copy of `t` handed over to the plugin, in memory from `malloc`: the plugin
/// frees it with [`free_floats`], which cannot be misled by a wrong length.
fn hand_over(t: &Tensor) -> Result<UsTensor> {
    let dims = t.dims().to_vec();
    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut tensor = UsTensor::borrowed(&dims, &values).context("a tensor of too many axes")?;
    // SAFETY: malloc of a checked size, filled before it is handed over.
    let data = unsafe { libc::malloc(values.len().max(1) * size_of::<f32>()) }.cast::<f32>();
    ensure!(
        !data.is_null(),
        "out of memory for a tensor of {} values",
        values.len()
    );
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), data, values.len()) };
    tensor.data = data;
    tensor.free = Some(free_floats);
    Ok(tensor)
}

/// Text handed over to the plugin, from `malloc` as [`hand_over`]'s tensors.
fn text(message: &str) -> UsText {
    // SAFETY: malloc of the text's length, filled before it is handed over.
    let ptr = unsafe { libc::malloc(message.len().max(1)) }.cast::<u8>();
    if ptr.is_null() {
        return UsText::NONE;
    }
    unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), ptr, message.len()) };
    UsText {
        ptr,
        len: message.len(),
        free: Some(free_bytes),
    }
}

unsafe extern "C" fn free_floats(data: *mut f32, _len: usize) {
    // SAFETY: from `hand_over`'s malloc.
    unsafe { libc::free(data.cast()) }
}

unsafe extern "C" fn free_bytes(ptr: *mut u8, _len: usize) {
    // SAFETY: from `text`'s malloc.
    unsafe { libc::free(ptr.cast()) }
}

/// Writes `outputs` (the first, then `n` more) into the plugin's slots; on failure
/// frees them all.
///
/// # Safety
/// `first` is a valid slot, `rest` points to `n` of them.
unsafe fn write_outputs(
    mut outputs: Vec<UsTensor>,
    first: *mut UsTensor,
    rest: *mut UsTensor,
    n: usize,
) -> Result<()> {
    if first.is_null() || (n > 0 && rest.is_null()) {
        for t in &mut outputs {
            unsafe { t.release() };
        }
        bail!("no place for the results");
    }
    let mut outputs = outputs.into_iter();
    unsafe { first.write(outputs.next().context("internal: no first output")?) };
    for (i, t) in outputs.enumerate() {
        unsafe { rest.add(i).write(t) };
    }
    Ok(())
}
