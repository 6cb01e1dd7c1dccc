//! Why a plugin was disabled: set once, by the first failure, and read from any
//! thread (the listing, the next call).

use std::sync::Mutex;

/// A plugin's disabled state; empty while it works.
#[derive(Debug, Default)]
pub struct Disabled(Mutex<Option<String>>);

impl Disabled {
    /// Why the plugin was disabled, if it was.
    pub fn why(&self) -> Option<String> {
        self.0.lock().map_or(None, |d| d.clone())
    }

    /// Disables the plugin for `why`, unless an earlier failure did.
    pub fn set(&self, why: &str) {
        if let Ok(mut d) = self.0.lock() {
            d.get_or_insert_with(|| why.to_owned());
        }
    }
}
