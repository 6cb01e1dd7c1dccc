//! Methods by name, as the command line and the TUI ask for them, from the
//! [`Descriptor`]s every method file declares. A name is a method
//! (`guided-backprop`), a wrapper around one (`smoothgrad:guided-backprop`), or a
//! wrapper alone, around saliency (`smoothgrad`).

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use anyhow::{Result, bail, ensure};

use super::descriptor::{Build, Descriptor, Param, Params, Value};
use super::method::Method;

/// The method a lone wrapper wraps.
const DEFAULT_INNER: &str = "saliency";

/// The methods plugins brought, in the order they were loaded.
static PLUGINS: RwLock<Vec<&'static Descriptor>> = RwLock::new(Vec::new());

/// Every method, in the order help lists them: the built-in ones, then the plugins'.
pub fn descriptors() -> Vec<&'static Descriptor> {
    let plugins = PLUGINS.read().unwrap_or_else(PoisonError::into_inner);
    super::METHOD_FILES
        .iter()
        .flat_map(|file| file.iter())
        .chain(plugins.iter().copied())
        .collect()
}

/// Whether the method called `name` came from a plugin.
pub fn is_plugin(name: &str) -> bool {
    let plugins = PLUGINS.read().unwrap_or_else(PoisonError::into_inner);
    plugins.iter().any(|d| d.name == name)
}

/// Adds a plugin's method, which then appears wherever the built-in ones do. Its
/// names must be new, and a parameter it shares with another method must be of the
/// same kind, range and default (it is one option).
pub fn register(descriptor: &'static Descriptor) -> Result<()> {
    for name in std::iter::once(descriptor.name).chain(descriptor.aliases.iter().copied()) {
        ensure!(
            find(name).is_none(),
            "a method named `{name}` exists already"
        );
    }
    for p in descriptor.params {
        if let Some(known) = parameters().into_iter().find(|q| q.name == p.name) {
            ensure!(
                known.kind == p.kind,
                "its parameter --{} is declared as {:?}, but the host's --{} is {:?}",
                p.name,
                p.kind,
                p.name,
                known.kind
            );
        }
    }
    PLUGINS
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .push(descriptor);
    Ok(())
}

/// The method called `name` (or one of its aliases).
pub fn find(name: &str) -> Option<&'static Descriptor> {
    descriptors()
        .into_iter()
        .find(|d| d.name == name || d.aliases.contains(&name))
}

/// Every parameter some method reads, once each, in the order methods declare them.
pub fn parameters() -> Vec<&'static Param> {
    let mut all: Vec<&'static Param> = Vec::new();
    for param in descriptors().into_iter().flat_map(|d| d.params) {
        if !all.iter().any(|p| p.name == param.name) {
            all.push(param);
        }
    }
    all
}

/// The descriptors `name` is made of: the method, or the wrapper then the method.
pub fn resolve(name: &str) -> Result<Vec<&'static Descriptor>> {
    let (outer, inner) = match name.split_once(':') {
        Some((outer, inner)) => (outer, Some(inner)),
        None => (name, None),
    };
    let Some(outer) = find(outer) else {
        bail!("unknown method `{outer}`; {}", known());
    };
    let inner = match (&outer.build, inner) {
        (Build::Method(_), None) => return Ok(vec![outer]),
        (Build::Method(_), Some(_)) => bail!("`{}` wraps no method; {}", outer.name, known()),
        (Build::Wrapper(_), inner) => inner.unwrap_or(DEFAULT_INNER),
    };
    // One wrapper: noise over noise multiplies the passes and means nothing more.
    ensure!(
        !inner.contains(':') && find(inner).is_none_or(|d| matches!(d.build, Build::Method(_))),
        "`{}:` wraps a plain method, not another wrapper",
        outer.name
    );
    let Some(inner) = find(inner) else {
        bail!("unknown method `{inner}`; {}", known());
    };
    Ok(vec![outer, inner])
}

/// The method called `name`, with `params` (each parameter not given at its
/// default).
pub fn build(name: &str, params: &Params) -> Result<Box<dyn Method>> {
    match resolve(name)?.as_slice() {
        [
            Descriptor {
                build: Build::Method(make),
                ..
            },
        ] => make(params),
        [
            Descriptor {
                build: Build::Wrapper(wrap),
                ..
            },
            Descriptor {
                build: Build::Method(make),
                ..
            },
        ] => wrap(params, make(params)?),
        _ => bail!("internal: `{name}` resolved to no method"),
    }
}

/// The parameter values the method `name` runs with under `params`, by name: what
/// a summary records beside its maps.
pub fn values(name: &str, params: &Params) -> Result<BTreeMap<&'static str, Value>> {
    Ok(resolve(name)?
        .into_iter()
        .flat_map(|d| params.of(d))
        .collect())
}

/// What `--list-methods` prints: a method per line, then its parameters indented,
/// each with its default and help.
pub fn listing() -> Vec<String> {
    let mut lines = Vec::new();
    for d in descriptors() {
        let name = match d.build {
            Build::Method(_) => d.name.to_owned(),
            Build::Wrapper(_) => format!("{}:METHOD", d.name),
        };
        let aliases = match d.aliases {
            [] => String::new(),
            a => format!(" (also {})", a.join(", ")),
        };
        let plugin = match is_plugin(d.name) {
            true => " [plugin]",
            false => "",
        };
        lines.push(format!(
            "{name:<22} {} ({}){aliases}{plugin}",
            d.about, d.citation
        ));
        for p in d.params {
            let default = p
                .default_value()
                .map_or("the model's last feature map".to_owned(), |v| v.to_string());
            lines.push(format!(
                "    --{:<16} [default: {default}] {}",
                p.name, p.help
            ));
        }
    }
    lines
}

fn known() -> String {
    let names: Vec<String> = descriptors()
        .into_iter()
        .map(|d| match d.build {
            Build::Method(_) => d.name.to_owned(),
            Build::Wrapper(_) => format!("{}:METHOD", d.name),
        })
        .collect();
    format!("known methods: {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Methods that read a parameter of the same name declare the same parameter:
    /// one option, one default, one range.
    #[test]
    fn a_shared_parameter_is_declared_alike_everywhere() {
        for d in descriptors() {
            for p in d.params {
                let first = parameters().into_iter().find(|q| q.name == p.name).unwrap();
                assert_eq!(first, p, "`{}` of {} differs", p.name, d.name);
            }
        }
    }

    /// Names and aliases are unique, and every default parses as its own parameter.
    #[test]
    fn names_are_unique_and_defaults_are_valid() {
        let mut names: Vec<&str> = descriptors()
            .into_iter()
            .flat_map(|d| std::iter::once(d.name).chain(d.aliases.iter().copied()))
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a name is taken twice");
        for p in parameters() {
            if let Some(default) = p.default_value() {
                assert_eq!(
                    p.parse(&default.to_string()).unwrap(),
                    default,
                    "{}",
                    p.name
                );
            }
        }
    }

    #[test]
    fn names_resolve_to_methods_and_wrappers() {
        let names = |n: &str| -> Vec<&str> { resolve(n).unwrap().iter().map(|d| d.name).collect() };
        assert_eq!(names("ig"), ["integrated-gradients"]);
        assert_eq!(names("vargrad"), ["vargrad", "saliency"]);
        assert_eq!(names("smoothgrad:occlusion"), ["smoothgrad", "occlusion"]);
        for (bad, needle) in [
            ("gradcam", "known methods"),
            ("saliency:occlusion", "wraps no method"),
            ("smoothgrad:vargrad", "not another wrapper"),
            ("smoothgrad:vargrad:saliency", "not another wrapper"),
            ("smoothgrad:nope", "unknown method `nope`"),
        ] {
            let err = resolve(bad).err().unwrap().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
