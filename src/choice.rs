//! Closed sets of named values (rules, colormaps, reductions, architectures): each
//! enum lists its values once with their names and one line of help, and every
//! edge (the CLI's options and `--help`, `Display`, the TUI's pickers) reads them
//! from there.

/// An enum whose values have fixed names.
pub trait Choice: Copy + Send + Sync + 'static {
    /// Every value, in the order help lists them.
    const ALL: &'static [Self];

    /// The value's name: on the command line, in cards and in JSON.
    fn name(self) -> &'static str;

    /// One line on what the value means.
    fn help(self) -> &'static str;

    /// The value named `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

/// Writes `Display` for a [`Choice`] as its name.
macro_rules! display_by_name {
    ($ty:ty) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }
    };
}
pub(crate) use display_by_name;
