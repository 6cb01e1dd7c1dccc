//! A method plugin as one of the host's methods: its declared parameters become a
//! [`Descriptor`] (options, help, the TUI's panel), and [`PluginMethod`] calls it
//! through the ABI and checks every map it returns. A plugin that fails, panics or
//! returns garbage is disabled for the rest of the process.

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use candle_core::{DType, Tensor};
use unitscope_sdk::abi::{
    PARAM_CHOICE, PARAM_FLAG, PARAM_INTEGER, PARAM_LAYERS, PARAM_REAL, PARAM_TEXT, TARGET_CLASS,
    TARGET_UNIT, US_CANCELLED, US_OK, UsArg, UsMethod, UsParam, UsPasses, UsStr, UsTarget,
    UsTensor, UsText,
};

use super::disabled::Disabled;
use super::host::Context;
use super::library::{slice, text};
use crate::attribution::descriptor::{Build, Built, Descriptor, Kind, Param, Params, Value};
use crate::attribution::{Attribution, Method, Passes, Target};
use crate::model::Model;

/// A loaded method plugin: its entries, and why it was disabled, once it is.
pub struct Plugin {
    /// Its name.
    pub name: &'static str,
    entries: Entries,
    /// Why it was disabled, once it is.
    pub disabled: Disabled,
}

/// A method plugin's entries.
struct Entries(&'static UsMethod);

// SAFETY: the entries are static and never written, and the ABI lets the host call
// them from any thread (sdk/README.md: "The ABI rules").
unsafe impl Send for Entries {}
unsafe impl Sync for Entries {}

/// The descriptor of the method plugin `name` with `entries`: leaked, as the
/// plugin is never unloaded.
pub fn describe(
    name: String,
    about: String,
    entries: &'static UsMethod,
) -> Result<(&'static Plugin, &'static Descriptor)> {
    let name: &'static str = leak(name);
    let params: Vec<Param> = unsafe { slice(entries.params, entries.n_params) }
        .iter()
        .map(param)
        .collect::<Result<_>>()?;
    for (i, p) in params.iter().enumerate() {
        ensure!(
            !p.name.is_empty()
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "its parameter `{}` is not named in lower-case letters, digits and dashes",
            p.name
        );
        ensure!(
            params[..i].iter().all(|q| q.name != p.name),
            "its parameter `{}` is declared twice",
            p.name
        );
    }
    let plugin: &'static Plugin = Box::leak(Box::new(Plugin {
        name,
        entries: Entries(entries),
        disabled: Disabled::default(),
    }));
    let descriptor = Descriptor {
        name,
        aliases: &[],
        about: leak(about),
        citation: leak(text(entries.citation, "citation")?),
        params: Box::leak(params.into_boxed_slice()),
        build: Build::Method(Box::leak(Box::new(move |params: &Params| -> Built {
            Ok(Box::new(PluginMethod::new(plugin, params)?))
        }))),
    };
    Ok((plugin, Box::leak(Box::new(descriptor))))
}

/// One declared parameter as the host's.
fn param(p: &UsParam) -> Result<Param> {
    let name = leak(text(p.name, "parameter name")?);
    let kind = match p.kind {
        PARAM_INTEGER => Kind::Integer {
            default: p.integer_default,
            min: p.integer_min,
            max: p.integer_max,
        },
        PARAM_REAL => Kind::Real {
            default: p.real_default,
            min: p.real_min,
            max: p.real_max,
        },
        PARAM_CHOICE => Kind::Choice {
            default: leak(text(p.text_default, "default")?),
            values: Box::leak(
                unsafe { slice(p.choices, p.n_choices) }
                    .iter()
                    .map(|c| Ok((leak(text(c.name, "choice")?), leak(text(c.help, "help")?))))
                    .collect::<Result<Vec<_>>>()?
                    .into_boxed_slice(),
            ),
        },
        PARAM_FLAG => Kind::Flag,
        PARAM_TEXT => Kind::Text {
            default: leak(text(p.text_default, "default")?),
        },
        PARAM_LAYERS => Kind::Layers,
        other => bail!("its parameter `{name}` is of an unknown kind ({other})"),
    };
    let param = Param {
        name,
        kind,
        help: leak(text(p.help, "help")?),
    };
    // The default must be a value the parameter accepts: a clear refusal now, not
    // a broken option later.
    if let Some(default) = param.default_value() {
        param
            .parse(&default.to_string())
            .with_context(|| format!("its parameter `{name}` has a default out of its range"))?;
    }
    Ok(param)
}

/// A plugin's method, with its parameters' values.
struct PluginMethod {
    plugin: &'static Plugin,
    values: Vec<(&'static Param, Value)>,
}

impl PluginMethod {
    fn new(plugin: &'static Plugin, params: &Params) -> Result<Self> {
        if let Some(why) = plugin.disabled.why() {
            bail!("the plugin `{}` is disabled: {why}", plugin.name);
        }
        let descriptor = crate::attribution::registry::find(plugin.name)
            .with_context(|| format!("internal: the plugin `{}` is not registered", plugin.name))?;
        let values = descriptor
            .params
            .iter()
            .map(|p| {
                let value = match p.kind {
                    // No layer given and no default layer: the plugin gets none.
                    Kind::Layers => params.get(p).unwrap_or(Value::Layers(Vec::new())),
                    _ => params.get(p)?,
                };
                Ok((p, value))
            })
            .collect::<Result<_>>()?;
        Ok(Self { plugin, values })
    }

    /// Runs `call` with the parameter values as the ABI carries them.
    fn with_args<R>(&self, call: impl FnOnce(&[UsArg]) -> R) -> R {
        let layers: Vec<Vec<UsStr>> = self
            .values
            .iter()
            .map(|(_, v)| match v {
                Value::Layers(names) => names.iter().map(|n| UsStr::new(n)).collect(),
                _ => Vec::new(),
            })
            .collect();
        let args: Vec<UsArg> = self
            .values
            .iter()
            .zip(&layers)
            .map(|((p, v), layers)| {
                let mut arg = UsArg {
                    name: UsStr::new(p.name),
                    kind: 0,
                    integer: 0,
                    real: 0.0,
                    flag: 0,
                    text: UsStr::EMPTY,
                    layers: layers.as_ptr(),
                    n_layers: layers.len(),
                };
                match v {
                    Value::Integer(i) => (arg.kind, arg.integer) = (PARAM_INTEGER, *i),
                    Value::Real(r) => (arg.kind, arg.real) = (PARAM_REAL, *r),
                    Value::Flag(f) => (arg.kind, arg.flag) = (PARAM_FLAG, u8::from(*f)),
                    Value::Text(t) => {
                        let kind = match p.kind {
                            Kind::Choice { .. } => PARAM_CHOICE,
                            _ => PARAM_TEXT,
                        };
                        (arg.kind, arg.text) = (kind, UsStr::new(t));
                    }
                    Value::Layers(_) => arg.kind = PARAM_LAYERS,
                }
                arg
            })
            .collect();
        call(&args)
    }

    /// The plugin's failure, reported and remembered: the plugin is disabled.
    fn fail(&self, why: String) -> anyhow::Error {
        self.plugin.disabled.set(&why);
        anyhow!(
            "the plugin `{}` failed and is disabled: {why}",
            self.plugin.name
        )
    }
}

impl Method for PluginMethod {
    fn name(&self) -> String {
        self.plugin.name.to_owned()
    }

    fn passes(&self, (height, width): (usize, usize)) -> Passes {
        let one = Passes {
            backward: 1,
            forward: 0,
        };
        let Some(passes) = self.plugin.entries.0.passes else {
            return one;
        };
        let mut out = UsPasses::default();
        let mut error = UsText::NONE;
        let status = self.with_args(|args| unsafe {
            passes(
                args.as_ptr(),
                args.len(),
                height as u64,
                width as u64,
                &mut out,
                &mut error,
            )
        });
        let message = unsafe { error.take() };
        if status != US_OK {
            // Counted as one pass; the call that follows reports the plugin disabled.
            let _ = self.fail(message.unwrap_or_else(|| "its pass count failed".to_owned()));
            return one;
        }
        // Clamped, so that the host's sum of the two cannot overflow.
        let clamp = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).min(usize::MAX / 4);
        Passes {
            backward: clamp(out.backward),
            forward: clamp(out.forward),
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        if let Some(why) = self.plugin.disabled.why() {
            bail!("the plugin `{}` is disabled: {why}", self.plugin.name);
        }
        let dims = inputs.dims().to_vec();
        let values = inputs
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let input = UsTensor::borrowed(&dims, &values).context("inputs of too many axes")?;
        let (raw_targets, _layers) = targets_to_abi(targets);
        let Some(attribute) = self.plugin.entries.0.attribute else {
            bail!(
                "internal: the plugin `{}` has no attribute entry",
                self.plugin.name
            );
        };
        let context = Context::new(model)?;
        let host = context.table();
        let mut maps = UsTensor::EMPTY;
        let mut error = UsText::NONE;
        let status = self.with_args(|args| unsafe {
            attribute(
                &host,
                args.as_ptr(),
                args.len(),
                &input,
                raw_targets.as_ptr(),
                raw_targets.len(),
                &mut maps,
                &mut error,
            )
        });
        let message = unsafe { error.take() };
        let result = match (status, context.host_failure()) {
            (US_OK, _) => check_maps(&maps, &dims).map_err(|e| self.fail(e)),
            (US_CANCELLED, _) => Err(crate::jobs::Cancelled.into()),
            // The host's own failure (a unit that does not exist, memory), passed on:
            // not the plugin's fault, so it stays enabled.
            (_, Some(host)) => Err(anyhow!("the plugin `{}` stopped: {host}", self.plugin.name)),
            _ => Err(self.fail(message.unwrap_or_else(|| "it gave no reason".to_owned()))),
        };
        // SAFETY: handed over with the plugin's free function.
        unsafe { maps.release() };
        let (shape, values) = result?;
        Ok(Attribution::Input(Tensor::from_vec(
            values,
            shape,
            model.device(),
        )?))
    }
}

/// The plugin's maps, checked against the inputs' shape `[N, C, H, W]`: `[N, C,
/// H, W]` or `[N, 1, H, W]`, a length that matches, finite values.
fn check_maps(maps: &UsTensor, inputs: &[usize]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let dims = maps.shape().map_err(|e| format!("it returned {e}"))?;
    let [n, c, h, w] = inputs[..] else {
        return Err(format!("internal: inputs of shape {inputs:?}"));
    };
    if dims.len() != 4 || dims[0] != n || (dims[1] != c && dims[1] != 1) || dims[2..] != inputs[2..]
    {
        return Err(format!(
            "it returned maps of shape {dims:?} for inputs of shape {inputs:?} (expected [{n}, {c} or 1, {h}, {w}])"
        ));
    }
    // SAFETY: the plugin's buffer, its length checked against its shape above.
    let values = unsafe { maps.values() }.map_err(|e| format!("it returned {e}"))?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "it returned a map holding {} (element {i})",
            values[i]
        ));
    }
    Ok((dims, values.to_vec()))
}

/// The targets as the ABI carries them, with the layer names they borrow.
fn targets_to_abi(targets: &[Target]) -> (Vec<UsTarget>, Vec<String>) {
    let layers: Vec<String> = targets
        .iter()
        .map(|t| t.layer().unwrap_or_default().to_owned())
        .collect();
    let raw = targets
        .iter()
        .zip(&layers)
        .map(|(t, layer)| {
            let mut raw = UsTarget {
                kind: TARGET_CLASS,
                class_index: 0,
                layer: UsStr::EMPTY,
                channel: 0,
                has_position: 0,
                y: 0,
                x: 0,
                weights: std::ptr::null(),
                n_weights: 0,
            };
            match t {
                Target::Class(c) => raw.class_index = *c as u64,
                Target::Unit(unit) => {
                    (raw.kind, raw.layer) = (TARGET_UNIT, UsStr::new(layer));
                    raw.channel = unit.channel as u64;
                    if let Some((y, x)) = unit.position {
                        (raw.has_position, raw.y, raw.x) = (1, y as u64, x as u64);
                    }
                }
            }
            raw
        })
        .collect();
    (raw, layers)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
