//! What each key does: actions by name, their default keys, the screens they act
//! on, and the overrides of the config's `[keys]` table. The help overlay, the
//! command palette and the config all read this one table.

use std::collections::HashMap;

use anyhow::{Result, bail};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::Screen;

/// Something the user can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Help,
    Palette,
    Back,
    NextScreen,
    PreviousScreen,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Open,
    Filter,
    Export,
    Sort,
    ExplainUnit,
    Diverse,
    NextMethod,
    PreviousMethod,
    NextTarget,
    PickClass,
    NextLayer,
    NextColormap,
    Outline,
    PickInput,
    NextInput,
    PreviousInput,
    EditParameters,
    Compare,
    Run,
}

/// Where an action acts: everywhere, or on some screens.
enum On {
    All,
    Only(&'static [Screen]),
}

/// One row of the key table.
struct Binding {
    action: Action,
    name: &'static str,
    keys: &'static [&'static str],
    on: On,
    help: &'static str,
}

use Screen::{Concepts, Explain, Model, Trust, Unit, Units};

const TABLE: &[Binding] = &[
    b(Action::Quit, "quit", &["q", "ctrl-c"], On::All, "quit"),
    b(Action::Help, "help", &["?"], On::All, "this help"),
    b(
        Action::Palette,
        "palette",
        &[":"],
        On::All,
        "command palette (fuzzy)",
    ),
    b(
        Action::Back,
        "back",
        &["esc"],
        On::All,
        "close, cancel the running job, or go back",
    ),
    b(
        Action::NextScreen,
        "next-screen",
        &["tab"],
        On::All,
        "next screen",
    ),
    b(
        Action::PreviousScreen,
        "previous-screen",
        &["backtab"],
        On::All,
        "previous screen",
    ),
    b(Action::Up, "up", &["k", "up"], On::All, "move up"),
    b(Action::Down, "down", &["j", "down"], On::All, "move down"),
    b(
        Action::Left,
        "left",
        &["h", "left"],
        On::Only(&[Units]),
        "move left",
    ),
    b(
        Action::Right,
        "right",
        &["l", "right"],
        On::Only(&[Units]),
        "move right",
    ),
    b(
        Action::PageUp,
        "page-up",
        &["pageup", "ctrl-u"],
        On::All,
        "a page up",
    ),
    b(
        Action::PageDown,
        "page-down",
        &["pagedown", "ctrl-d"],
        On::All,
        "a page down",
    ),
    b(Action::Top, "top", &["g", "home"], On::All, "first"),
    b(Action::Bottom, "bottom", &["G", "end"], On::All, "last"),
    b(
        Action::Open,
        "open",
        &["enter"],
        On::Only(&[Model, Units, Concepts]),
        "open the layer / the unit / the concept's units",
    ),
    b(
        Action::Filter,
        "filter",
        &["/"],
        On::Only(&[Units]),
        "find units by index or concept (red, stripes; =red: its detectors)",
    ),
    b(
        Action::Export,
        "export",
        &["e"],
        On::All,
        "export this view (PNG/NPY/JSON)",
    ),
    b(
        Action::Sort,
        "sort",
        &["s"],
        On::Only(&[Units]),
        "sort by index, mean, max or concept IoU",
    ),
    b(
        Action::ExplainUnit,
        "explain-unit",
        &["x"],
        On::Only(&[Units, Unit]),
        "explain this unit on the current input",
    ),
    b(
        Action::Diverse,
        "diverse",
        &["d"],
        On::Only(&[Unit]),
        "four diverse feature visualizations of this unit",
    ),
    b(
        Action::NextMethod,
        "next-method",
        &["m"],
        On::Only(&[Explain]),
        "next method",
    ),
    b(
        Action::PreviousMethod,
        "previous-method",
        &["M"],
        On::Only(&[Explain]),
        "previous method",
    ),
    b(
        Action::NextTarget,
        "next-target",
        &["t"],
        On::Only(&[Explain]),
        "target: predicted, top classes, the unit",
    ),
    b(
        Action::PickClass,
        "pick-class",
        &["T"],
        On::Only(&[Explain]),
        "target: any class (fuzzy)",
    ),
    b(
        Action::NextLayer,
        "next-layer",
        &["y"],
        On::Only(&[Explain]),
        "the CAM layer",
    ),
    b(
        Action::NextColormap,
        "next-colormap",
        &["c"],
        On::Only(&[Explain]),
        "colormap",
    ),
    b(
        Action::Outline,
        "outline",
        &["o"],
        On::Only(&[Explain]),
        "superpixel borders over LIME's and KernelSHAP's maps",
    ),
    b(
        Action::PickInput,
        "pick-input",
        &["i"],
        On::Only(&[Explain, Trust]),
        "pick an input (fuzzy)",
    ),
    b(
        Action::NextInput,
        "next-input",
        &["]"],
        On::Only(&[Explain, Unit]),
        "next input",
    ),
    b(
        Action::PreviousInput,
        "previous-input",
        &["["],
        On::Only(&[Explain, Unit]),
        "previous input",
    ),
    b(
        Action::EditParameters,
        "parameters",
        &["p"],
        On::Only(&[Explain]),
        "edit the method's parameters",
    ),
    b(
        Action::Compare,
        "compare",
        &["v"],
        On::Only(&[Explain]),
        "compare the chosen methods side by side",
    ),
    b(
        Action::Run,
        "run",
        &["r"],
        On::Only(&[Trust]),
        "measure (again)",
    ),
];

const fn b(
    action: Action,
    name: &'static str,
    keys: &'static [&'static str],
    on: On,
    help: &'static str,
) -> Binding {
    Binding {
        action,
        name,
        keys,
        on,
        help,
    }
}

/// A key as the table writes it: `q`, `G`, `?`, `esc`, `ctrl-c`, `f5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    code: KeyCode,
    ctrl: bool,
}

impl Key {
    /// Reads `ctrl-x`, a single character, or a named key.
    pub fn parse(text: &str) -> Result<Self> {
        let (ctrl, rest) = match text.strip_prefix("ctrl-") {
            Some(rest) if !rest.is_empty() => (true, rest),
            _ => (false, text),
        };
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(c),
            _ => match rest.to_ascii_lowercase().as_str() {
                "esc" => KeyCode::Esc,
                "enter" => KeyCode::Enter,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "space" => KeyCode::Char(' '),
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "pageup" => KeyCode::PageUp,
                "pagedown" => KeyCode::PageDown,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "backspace" => KeyCode::Backspace,
                f if f.starts_with('f')
                    && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
                {
                    KeyCode::F(f[1..].parse().expect("checked above"))
                }
                _ => bail!(
                    "`{text}` is not a key: use one character, ctrl-X, or esc, enter, tab, \
                     space, up, down, left, right, pageup, pagedown, home, end, f1..f12"
                ),
            },
        };
        Ok(Self { code, ctrl })
    }

    fn of(event: &KeyEvent) -> Self {
        // Shifted letters arrive as upper-case characters; the shift itself is noise.
        Self {
            code: event.code,
            ctrl: event.modifiers.contains(KeyModifiers::CONTROL),
        }
    }
}

/// The keys in force: the defaults with the config's overrides.
pub struct Keymap {
    keys: HashMap<Action, Vec<Key>>,
    labels: HashMap<Action, String>,
}

impl Default for Keymap {
    fn default() -> Self {
        Self::with_overrides(&HashMap::new()).expect("the default keys parse")
    }
}

impl Keymap {
    /// The default keys, with `overrides` (action name to keys) replacing an
    /// action's keys; an unknown action or key is an error that says which.
    pub fn with_overrides(overrides: &HashMap<String, Vec<String>>) -> Result<Self> {
        for name in overrides.keys() {
            if !TABLE.iter().any(|b| b.name == name) {
                let names: Vec<_> = TABLE.iter().map(|b| b.name).collect();
                bail!(
                    "[keys] `{name}` is no action; actions: {}",
                    names.join(", ")
                );
            }
        }
        let mut keys = HashMap::new();
        let mut labels = HashMap::new();
        for binding in TABLE {
            let texts: Vec<String> = match overrides.get(binding.name) {
                Some(texts) => texts.clone(),
                None => binding.keys.iter().map(|k| k.to_string()).collect(),
            };
            let parsed = texts
                .iter()
                .map(|t| Key::parse(t))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| anyhow::anyhow!("[keys] {}: {e}", binding.name))?;
            keys.insert(binding.action, parsed);
            labels.insert(binding.action, texts.join(" "));
        }
        Ok(Self { keys, labels })
    }

    /// The action `event` asks for on `screen`, if any.
    pub fn action(&self, event: &KeyEvent, screen: Screen) -> Option<Action> {
        let key = Key::of(event);
        TABLE
            .iter()
            .filter(|b| applies(b, screen))
            .find(|b| self.keys[&b.action].contains(&key))
            .map(|b| b.action)
    }

    /// The help of `screen`: (keys, what they do) for every action acting on it.
    pub fn help(&self, screen: Screen) -> Vec<(String, &'static str)> {
        TABLE
            .iter()
            .filter(|b| applies(b, screen))
            .map(|b| (self.labels[&b.action].clone(), b.help))
            .collect()
    }

    /// The first key of `action`, as shown in hints.
    pub fn label(&self, action: Action) -> &str {
        self.labels[&action].split(' ').next().unwrap_or("")
    }
}

/// Every action with its name and help, for the command palette.
pub fn actions() -> impl Iterator<Item = (Action, &'static str, &'static str)> {
    TABLE.iter().map(|b| (b.action, b.name, b.help))
}

fn applies(binding: &Binding, screen: Screen) -> bool {
    match binding.on {
        On::All => true,
        On::Only(screens) => screens.contains(&screen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn defaults_and_overrides() {
        let keys = Keymap::default();
        assert_eq!(
            keys.action(&press(KeyCode::Char('q')), Model),
            Some(Action::Quit)
        );
        assert_eq!(
            keys.action(&press(KeyCode::Char('m')), Explain),
            Some(Action::NextMethod)
        );
        // `m` means nothing on the Model screen.
        assert_eq!(keys.action(&press(KeyCode::Char('m')), Model), None);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(keys.action(&ctrl_c, Explain), Some(Action::Quit));
        // Not the colormap key, although the character is the same.
        assert_ne!(keys.action(&ctrl_c, Explain), Some(Action::NextColormap));

        let overrides = HashMap::from([("quit".to_string(), vec!["Q".to_string()])]);
        let keys = Keymap::with_overrides(&overrides).unwrap();
        assert_eq!(keys.action(&press(KeyCode::Char('q')), Model), None);
        assert_eq!(
            keys.action(&press(KeyCode::Char('Q')), Model),
            Some(Action::Quit)
        );
        assert_eq!(keys.label(Action::Quit), "Q");
    }

    #[test]
    fn bad_overrides_say_what_is_wrong() {
        let unknown = HashMap::from([("fly".to_string(), vec!["f".to_string()])]);
        let e = Keymap::with_overrides(&unknown).err().unwrap().to_string();
        assert!(e.contains("`fly` is no action"), "{e}");
        let bad_key = HashMap::from([("quit".to_string(), vec!["hyper-q".to_string()])]);
        let e = Keymap::with_overrides(&bad_key).err().unwrap().to_string();
        assert!(e.contains("quit: `hyper-q` is not a key"), "{e}");
        assert_eq!(Key::parse("f5").unwrap().code, KeyCode::F(5));
        assert!(Key::parse("f13").is_err());
    }

    /// Every screen's keys are distinct: no key does two things on one screen.
    #[test]
    fn no_key_is_bound_twice_on_a_screen() {
        let keys = Keymap::default();
        for screen in Screen::ALL {
            let mut seen = HashMap::new();
            for b in TABLE.iter().filter(|b| applies(b, *screen)) {
                for key in &keys.keys[&b.action] {
                    if let Some(other) = seen.insert(*key, b.name) {
                        panic!("{key:?} is both {other} and {} on {screen:?}", b.name);
                    }
                }
            }
        }
    }
}
