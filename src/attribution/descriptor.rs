//! What a method says about itself, once, in its own file: its name, one line on
//! what it does, its paper, and its parameters (name, type, default, range, help).
//! The command line's options and `--help`, `--list-methods`, the summary JSON and
//! the TUI's parameter panel are all built from these; a plugin method brings one.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use super::method::Method;

/// An attribution method as the registry knows it.
pub struct Descriptor {
    /// Its name on the command line, e.g. `grad-cam`.
    pub name: &'static str,
    /// Other names it answers to.
    pub aliases: &'static [&'static str],
    /// One line on what it computes.
    pub about: &'static str,
    /// Where it comes from, e.g. `Selvaraju et al. 2017`.
    pub citation: &'static str,
    /// The parameters it reads.
    pub params: &'static [Param],
    /// How it is made from parameter values.
    pub build: Build,
}

/// A built method.
pub type Built = Result<Box<dyn Method>>;

/// How a [`Descriptor`]'s method is made.
pub enum Build {
    /// A method on its own (a closure: a plugin's captures the plugin).
    Method(&'static (dyn Fn(&Params) -> Built + Send + Sync)),
    /// A method around another one (`smoothgrad:guided-backprop`).
    Wrapper(fn(&Params, Box<dyn Method>) -> Built),
}

/// One parameter of a method. Methods that read the same parameter (`batch-size`)
/// declare the same [`Param`], so it is one option with one default.
#[derive(Debug, PartialEq)]
pub struct Param {
    /// Its name: the option is `--NAME`, the JSON key `NAME`.
    pub name: &'static str,
    /// Its type, range and default.
    pub kind: Kind,
    /// One line of help.
    pub help: &'static str,
}

/// A parameter's type, with its range and default.
#[derive(Debug, PartialEq)]
pub enum Kind {
    /// A whole number in `min..=max`.
    Integer {
        /// The default.
        default: u64,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// A finite real number in `min..=max`.
    Real {
        /// The default.
        default: f64,
        /// The least allowed.
        min: f64,
        /// The most allowed.
        max: f64,
    },
    /// One of a few names.
    Choice {
        /// The default.
        default: &'static str,
        /// The names, with a line of help each.
        values: &'static [(&'static str, &'static str)],
    },
    /// On or off; off by default.
    Flag,
    /// Free text the method parses itself.
    Text {
        /// The default.
        default: &'static str,
    },
    /// Layer names; by default the model's last layer with feature maps.
    Layers,
}

/// A parameter's value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// Of [`Kind::Integer`].
    Integer(u64),
    /// Of [`Kind::Real`].
    Real(f64),
    /// Of [`Kind::Choice`] and [`Kind::Text`].
    Text(String),
    /// Of [`Kind::Flag`].
    Flag(bool),
    /// Of [`Kind::Layers`].
    Layers(Vec<String>),
}

impl Param {
    /// `text` as this parameter's value; an error names the range or the choices.
    pub fn parse(&self, text: &str) -> Result<Value> {
        Ok(match &self.kind {
            Kind::Integer { min, max, .. } => {
                let v: u64 = text
                    .trim()
                    .parse()
                    .with_context(|| format!("`{text}` is not a whole number"))?;
                ensure!((min..=max).contains(&&v), "{v} is not in {min}..={max}");
                Value::Integer(v)
            }
            Kind::Real { min, max, .. } => {
                let v: f64 = text
                    .trim()
                    .parse()
                    .with_context(|| format!("`{text}` is not a number"))?;
                ensure!(
                    v.is_finite() && (min..=max).contains(&&v),
                    "{v} is not in {min}..={max}"
                );
                Value::Real(v)
            }
            Kind::Choice { values, .. } => {
                ensure!(
                    values.iter().any(|(name, _)| *name == text),
                    "`{text}` is not one of {}",
                    values
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Value::Text(text.to_owned())
            }
            Kind::Flag => Value::Flag(match text {
                "true" => true,
                "false" => false,
                _ => bail!("`{text}` is not true or false"),
            }),
            Kind::Text { .. } => Value::Text(text.to_owned()),
            Kind::Layers => Value::Layers(text.split(',').map(str::to_owned).collect()),
        })
    }

    /// The default value; `None` for [`Kind::Layers`], whose default is the model's.
    pub fn default_value(&self) -> Option<Value> {
        Some(match &self.kind {
            Kind::Integer { default, .. } => Value::Integer(*default),
            Kind::Real { default, .. } => Value::Real(*default),
            Kind::Choice { default, .. } | Kind::Text { default } => {
                Value::Text((*default).to_owned())
            }
            Kind::Flag => Value::Flag(false),
            Kind::Layers => return None,
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Integer(v) => write!(f, "{v}"),
            Self::Real(v) => write!(f, "{v}"),
            Self::Text(v) => f.write_str(v),
            Self::Flag(v) => write!(f, "{v}"),
            Self::Layers(v) => f.write_str(&v.join(",")),
        }
    }
}

/// Parameter values by name: what was given, else each parameter's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Params(BTreeMap<String, Value>);

impl Params {
    /// No values given: every parameter at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_owned(), value);
    }

    /// The value of `param`: the one given, else its default.
    pub fn get(&self, param: &Param) -> Result<Value> {
        match self.0.get(param.name) {
            Some(v) => Ok(v.clone()),
            None => param.default_value().with_context(|| {
                format!(
                    "`{}` has no default here; give --{}",
                    param.name, param.name
                )
            }),
        }
    }

    /// The value of a [`Kind::Integer`] parameter.
    pub fn integer(&self, param: &Param) -> Result<u64> {
        match self.get(param)? {
            Value::Integer(v) => Ok(v),
            other => bail!("`{}` is {other:?}, not a whole number", param.name),
        }
    }

    /// The value of a [`Kind::Integer`] parameter, as a count.
    pub fn count(&self, param: &Param) -> Result<usize> {
        Ok(usize::try_from(self.integer(param)?)?)
    }

    /// The value of a [`Kind::Real`] parameter.
    pub fn real(&self, param: &Param) -> Result<f64> {
        match self.get(param)? {
            Value::Real(v) => Ok(v),
            other => bail!("`{}` is {other:?}, not a number", param.name),
        }
    }

    /// The value of a [`Kind::Choice`] or [`Kind::Text`] parameter.
    pub fn text(&self, param: &Param) -> Result<String> {
        match self.get(param)? {
            Value::Text(v) => Ok(v),
            other => bail!("`{}` is {other:?}, not text", param.name),
        }
    }

    /// The value of a [`Kind::Flag`] parameter.
    pub fn flag(&self, param: &Param) -> Result<bool> {
        match self.get(param)? {
            Value::Flag(v) => Ok(v),
            other => bail!("`{}` is {other:?}, not a flag", param.name),
        }
    }

    /// The value of a [`Kind::Layers`] parameter.
    pub fn layers(&self, param: &Param) -> Result<Vec<String>> {
        match self.get(param)? {
            Value::Layers(v) if !v.is_empty() => Ok(v),
            _ => bail!(
                "this method needs a layer with feature maps: --{} NAME (`unitscope info` lists them)",
                param.name
            ),
        }
    }

    /// The values `descriptor`'s parameters take here, by name: what its method was
    /// run with.
    pub fn of(&self, descriptor: &Descriptor) -> BTreeMap<&'static str, Value> {
        descriptor
            .params
            .iter()
            .filter_map(|p| Some((p.name, self.get(p).ok()?)))
            .collect()
    }
}

/// Parameters several methods read.
pub mod shared {
    use super::{Kind, Param};

    /// The layers a CAM reads.
    pub const LAYER: Param = Param {
        name: "layer",
        kind: Kind::Layers,
        help: "Layers for the CAM methods (comma-separated; several are averaged). \
               Default: the last layer with feature maps",
    };

    /// The seed of a method's random draws.
    pub const SEED: Param = Param {
        name: "seed",
        kind: Kind::Integer {
            default: 0,
            min: 0,
            max: u64::MAX,
        },
        help: "Seed of a method's random draws (SmoothGrad's noise, LIME's and KernelSHAP's coalitions)",
    };

    /// Inputs per pass for methods that run many.
    pub const BATCH_SIZE: Param = Param {
        name: "batch-size",
        kind: Kind::Integer {
            default: 16,
            min: 1,
            max: 256,
        },
        help: "Inputs per pass of the methods that run many (SmoothGrad, integrated gradients, occlusion, LIME, SHAP) or batch them (LRP): bounds memory",
    };
}

/// Declares the method files and lists their descriptors, in help order: a new
/// method is a new file declaring `pub const DESCRIPTORS: &[Descriptor]`, and its
/// name in the one invocation of this macro (`attribution/mod.rs`).
macro_rules! method_files {
    ($($file:ident),* $(,)?) => {
        $(mod $file;)*

        /// Every method file's descriptors, in the order help lists them.
        const METHOD_FILES: &[&[$crate::attribution::descriptor::Descriptor]] =
            &[$($file::DESCRIPTORS),*];
    };
}
pub(crate) use method_files;
