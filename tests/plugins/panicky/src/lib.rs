//! Panics where `$PANICKY_AT` says; otherwise each map is the input's gradient.

use unitscope_sdk::{Args, Error, Host, Method, Param, Passes, Target, Tensor, export_plugin};

#[derive(Default)]
struct Panicky;

fn panic_at(place: &str) {
    if std::env::var("PANICKY_AT").as_deref() == Ok(place) {
        panic!("panicky panics in {place}");
    }
}

impl Method for Panicky {
    const NAME: &'static str = "panicky";
    const VERSION: &'static str = "0.1.0";
    const ABOUT: &'static str = "panics on request";
    const CITATION: &'static str = "the test corpus";

    fn params() -> Vec<Param> {
        panic_at("entry");
        Vec::new()
    }

    fn passes(&self, _: &Args, _: usize, _: usize) -> Result<Passes, Error> {
        panic_at("passes");
        Ok(Passes { backward: 1, forward: 0 })
    }

    fn attribute(&self, host: &Host, _: &Args, inputs: &Tensor, targets: &[Target]) -> Result<Tensor, Error> {
        panic_at("attribute");
        Ok(host.gradient(inputs, targets, Default::default(), &[])?.input)
    }
}

export_plugin!(method: Panicky);
