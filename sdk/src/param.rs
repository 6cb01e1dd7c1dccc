//! A method's parameters, declared once: the host turns each into a command-line
//! option (`--NAME`), a row of the TUI's parameter panel and a key of the summary
//! JSON, exactly as it does for its own methods; and their values, as a call
//! receives them.

use std::collections::BTreeMap;

use crate::Error;
use crate::abi::{
    PARAM_CHOICE, PARAM_FLAG, PARAM_INTEGER, PARAM_LAYERS, PARAM_REAL, PARAM_TEXT, UsArg, UsChoice,
    UsParam, UsStr,
};

/// One parameter a method reads.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its name: the option is `--NAME`.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Its type, range and default.
    pub kind: Kind,
}

/// A parameter's type, range and default.
#[derive(Clone, Debug)]
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
    /// One of a few names, each with a line of help.
    Choice {
        /// The default.
        default: &'static str,
        /// The names and their help.
        values: &'static [(&'static str, &'static str)],
    },
    /// On or off; off by default.
    Flag,
    /// Free text.
    Text {
        /// The default.
        default: &'static str,
    },
    /// Layer names, comma-separated on the command line. A parameter named
    /// `layer` is the host's own (the CAMs'), by default the model's last layer
    /// with feature maps; any other is empty unless given.
    Layers,
}

/// A parameter's value in a call.
#[derive(Clone, Debug, PartialEq)]
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

/// The values of a call's parameters, by name.
#[derive(Clone, Debug, Default)]
pub struct Args(BTreeMap<String, Value>);

impl Args {
    /// The value of `name`; an error when the host gave none.
    pub fn get(&self, name: &str) -> Result<&Value, Error> {
        self.0
            .get(name)
            .ok_or_else(|| Error::new(format!("no value for the parameter `{name}`")))
    }

    /// The value of an integer parameter.
    pub fn integer(&self, name: &str) -> Result<u64, Error> {
        match self.get(name)? {
            Value::Integer(v) => Ok(*v),
            other => Err(Error::new(format!(
                "`{name}` is {other:?}, not a whole number"
            ))),
        }
    }

    /// The value of a real parameter.
    pub fn real(&self, name: &str) -> Result<f64, Error> {
        match self.get(name)? {
            Value::Real(v) => Ok(*v),
            other => Err(Error::new(format!("`{name}` is {other:?}, not a number"))),
        }
    }

    /// The value of a choice or text parameter.
    pub fn text(&self, name: &str) -> Result<&str, Error> {
        match self.get(name)? {
            Value::Text(v) => Ok(v),
            other => Err(Error::new(format!("`{name}` is {other:?}, not text"))),
        }
    }

    /// The value of a flag.
    pub fn flag(&self, name: &str) -> Result<bool, Error> {
        match self.get(name)? {
            Value::Flag(v) => Ok(*v),
            other => Err(Error::new(format!("`{name}` is {other:?}, not a flag"))),
        }
    }

    /// The value of a layers parameter.
    pub fn layers(&self, name: &str) -> Result<&[String], Error> {
        match self.get(name)? {
            Value::Layers(v) => Ok(v),
            other => Err(Error::new(format!("`{name}` is {other:?}, not layers"))),
        }
    }

    /// The values of a call, read from the host's array.
    ///
    /// # Safety
    /// `args` points to `n` valid [`UsArg`]s whose text lives for the call.
    pub(crate) unsafe fn read(args: *const UsArg, n: usize) -> Result<Self, Error> {
        let args = unsafe { crate::slice(args, n) };
        let mut values = BTreeMap::new();
        for arg in args {
            let name = unsafe { text(arg.name) }?;
            let value = match arg.kind {
                PARAM_INTEGER => Value::Integer(arg.integer),
                PARAM_REAL => Value::Real(arg.real),
                PARAM_FLAG => Value::Flag(arg.flag != 0),
                PARAM_CHOICE | PARAM_TEXT => Value::Text(unsafe { text(arg.text) }?),
                PARAM_LAYERS => Value::Layers(
                    unsafe { crate::slice(arg.layers, arg.n_layers) }
                        .iter()
                        .map(|&s| unsafe { text(s) })
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(Error::new(format!("`{name}` has unknown kind {other}"))),
            };
            values.insert(name, value);
        }
        Ok(Self(values))
    }
}

/// Owned text from the host's borrowed text.
///
/// # Safety
/// As for [`UsStr::to_str`].
pub(crate) unsafe fn text(s: UsStr) -> Result<String, Error> {
    unsafe { s.to_str() }.map(str::to_owned).map_err(Error::new)
}

impl Param {
    /// The declaration as the ABI carries it; its text borrows `self`'s static
    /// strings, its choices `choices` (which must outlive it).
    pub(crate) fn to_abi(&self, choices: &[UsChoice]) -> UsParam {
        let mut p = UsParam {
            name: UsStr::new(self.name),
            help: UsStr::new(self.help),
            kind: 0,
            integer_default: 0,
            integer_min: 0,
            integer_max: 0,
            real_default: 0.0,
            real_min: 0.0,
            real_max: 0.0,
            text_default: UsStr::EMPTY,
            choices: std::ptr::null(),
            n_choices: 0,
        };
        match &self.kind {
            Kind::Integer { default, min, max } => {
                (p.kind, p.integer_default, p.integer_min, p.integer_max) =
                    (PARAM_INTEGER, *default, *min, *max);
            }
            Kind::Real { default, min, max } => {
                (p.kind, p.real_default, p.real_min, p.real_max) =
                    (PARAM_REAL, *default, *min, *max);
            }
            Kind::Choice { default, .. } => {
                (p.kind, p.text_default) = (PARAM_CHOICE, UsStr::new(default));
                (p.choices, p.n_choices) = (choices.as_ptr(), choices.len());
            }
            Kind::Flag => p.kind = PARAM_FLAG,
            Kind::Text { default } => (p.kind, p.text_default) = (PARAM_TEXT, UsStr::new(default)),
            Kind::Layers => p.kind = PARAM_LAYERS,
        }
        p
    }

    /// A [`Kind::Choice`]'s choices as the ABI carries them.
    pub(crate) fn abi_choices(&self) -> Vec<UsChoice> {
        match &self.kind {
            Kind::Choice { values, .. } => values
                .iter()
                .map(|(name, help)| UsChoice {
                    name: UsStr::new(name),
                    help: UsStr::new(help),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}
