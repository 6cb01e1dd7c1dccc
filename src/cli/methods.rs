//! The attribution-method flags `explain` and `evaluate` share.

use anyhow::{Result, ensure};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Arg, ArgAction, ArgMatches, Command};
use unitscope::attribution::descriptor::shared::LAYER;
use unitscope::attribution::descriptor::{Kind, Param, Params, Value};
use unitscope::attribution::{self, Method, registry};
use unitscope::model::Model;

/// Model passes one method may take per input (SmoothGrad's samples times its inner
/// method's passes): beyond this a run is hours, not a mistake to wait out.
const MAX_PASSES: usize = 100_000;

/// The methods to run and their parameters. Every parameter option comes from the
/// methods' descriptors (see [`registry::parameters`]); a method added to the
/// registry brings its own.
#[derive(Clone, Debug)]
pub struct MethodArgs {
    methods: Vec<String>,
    params: Params,
}

/// A method as named on the command line, built.
pub type NamedMethod = (String, Box<dyn Method>);

const DEFAULT_METHODS: &str = "saliency,guided-backprop,grad-cam";

impl clap::Args for MethodArgs {
    fn augment_args(cmd: Command) -> Command {
        let method = Arg::new("method")
            .long("method")
            .short('m')
            .value_name("METHOD")
            .value_delimiter(',')
            .default_value(DEFAULT_METHODS)
            .help("Methods, comma-separated (`unitscope explain --list-methods` names them all)");
        registry::parameters()
            .into_iter()
            .fold(cmd.arg(method), |cmd, p| cmd.arg(option(p)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for MethodArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let methods = matches
            .get_many::<String>("method")
            .map(|names| names.cloned().collect())
            .unwrap_or_default();
        let mut params = Params::new();
        for p in registry::parameters() {
            let value = match p.kind {
                Kind::Flag => matches.get_flag(p.name).then_some(Value::Flag(true)),
                Kind::Layers => matches
                    .get_many::<String>(p.name)
                    .map(|layers| Value::Layers(layers.cloned().collect())),
                _ => matches.get_one::<Value>(p.name).cloned(),
            };
            if let Some(value) = value {
                params.set(p.name, value);
            }
        }
        Ok(Self { methods, params })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// The option `--NAME` of a method parameter: its help, its default, and its
/// range or choices checked as the command line is read.
fn option(p: &'static Param) -> Arg {
    let arg = Arg::new(p.name)
        .long(p.name)
        .help(p.help)
        .value_name(p.name.to_uppercase());
    match &p.kind {
        Kind::Flag => arg.action(ArgAction::SetTrue).value_name(None::<&str>),
        Kind::Layers => arg.value_delimiter(',').action(ArgAction::Append),
        Kind::Choice { default, values } => arg.default_value(*default).value_parser(
            PossibleValuesParser::new(values.iter().map(|(n, h)| PossibleValue::new(n).help(h)))
                .map(Value::Text),
        ),
        _ => {
            let default = p.default_value().map(|v| v.to_string()).unwrap_or_default();
            arg.default_value(default)
                .allow_negative_numbers(true)
                .value_parser(move |s: &str| p.parse(s).map_err(|e| e.to_string()))
        }
    }
}

impl MethodArgs {
    /// Each method as named on the command line, built for `model`.
    pub fn build(&self, model: &Model) -> Result<Vec<NamedMethod>> {
        let params = self.params(model);
        self.methods
            .iter()
            .map(|name| {
                let method = registry::build(name, &params)?;
                let [h, w] = model.input_spec().size;
                let passes = method.passes((h, w));
                let total = passes.backward + passes.forward;
                ensure!(
                    total <= MAX_PASSES,
                    "`{name}` would take {total} model passes per input, over the limit of \
                     {MAX_PASSES}: lower --samples, --steps or raise --window/--stride"
                );
                Ok((name.clone(), method))
            })
            .collect()
    }

    /// The parameters as given, the CAM layer defaulting to `model`'s last feature
    /// map (when it has one; a CAM on a model without says what to give).
    pub fn params(&self, model: &Model) -> Params {
        let mut params = self.params.clone();
        if params.get(&LAYER).is_err()
            && let Ok(layer) = attribution::default_cam_layer(model)
        {
            params.set(LAYER.name, Value::Layers(vec![layer]));
        }
        params
    }
}
