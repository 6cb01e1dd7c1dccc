//! The inspector's state and what each key, click and job result does to it. The
//! views (`view/`) only read it; the jobs (`work`) only compute. Every request for
//! work goes through [`App::submit`], every result comes back through
//! [`App::pump`], so the UI thread never waits on the model.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use candle_core::Device;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;
use unitscope::attribution::descriptor::Value;
use unitscope::attribution::descriptor::shared::LAYER;
use unitscope::attribution::{Params, TargetSpec, registry};
use unitscope::choice::Choice;
use unitscope::data::{Entry, Source, modality};
use unitscope::jobs::{self, Event, JobId, Progress, Runner};
use unitscope::model::{Model, ModelCard, UnitAddress};
use unitscope::render::Colormap;
use unitscope::units::Cache;

use super::Screen;
use super::finder::Finder;
use super::keys::{Action, Keymap};
use super::pictures::{PictureId, Pictures};
use super::theme::Theme;
use super::work::{
    self, Compared, Concepts, Dissected, ExplainKey, Explained, InputView, LayerView, Output,
    Request, Tile, TrustRow,
};

/// The methods compared and measured unless the config names others.
pub const COMPARE: &[&str] = &[
    "saliency",
    "guided-backprop",
    "grad-cam",
    "smoothgrad",
    "integrated-gradients",
];

/// The inputs a layer's unit statistics are computed on: the first of the list.
pub const STATS_INPUTS: usize = 64;

/// Thumbnails made per job beyond the visible ones: small enough that scrolling
/// away cancels little work.
const THUMBNAIL_BATCH: usize = 32;

/// Read inputs kept, with their maps and pictures.
const KEPT_INPUTS: usize = 24;

/// What the inspector opens.
pub struct Setup {
    /// A model card, or the embedded demo model.
    pub card: Option<(PathBuf, ModelCard)>,
    /// A model already loaded (the bench's), instead of loading the card's.
    pub model: Option<Arc<Model>>,
    /// Where the inputs come from.
    pub source: Source,
    pub theme: Theme,
    pub keys: Keymap,
    pub pictures: Pictures,
    pub compare: Vec<String>,
    /// Where layer searches and feature visualizations are kept between runs
    /// (none: computed every time).
    pub cache: Option<PathBuf>,
    /// Whether units get feature visualizations (thumbnails and the unit card).
    pub visualize: bool,
    /// Whether layers get a Network Dissection (grid labels, the unit card's
    /// concept, the Concepts screen).
    pub dissect: bool,
    /// A Broden-layout dataset to dissect layers on (the demo model has its own
    /// concept world).
    pub concepts: Option<PathBuf>,
    /// Problems found while setting up (a bad config), for the status bar.
    pub notices: Vec<String>,
    /// Where models are loaded and every job computes.
    pub device: Device,
}

/// A line in the status bar.
#[derive(Clone, Debug)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// A running job, as the status bar shows it.
pub struct Running {
    pub slot: &'static str,
    /// What it computes, so that asking again does not restart it.
    pub(super) what: String,
    pub progress: Option<Progress>,
}

/// What is drawn over the screen.
pub enum Overlay {
    Help,
    Finder(Finder<Pick>),
    /// Typing a new value for a method parameter.
    Edit {
        param: &'static str,
        text: String,
    },
}

/// What a finder entry does when chosen.
#[derive(Clone, Debug)]
pub enum Pick {
    Act(Action),
    Screen(Screen),
    Method(String),
    Colormap(Colormap),
    Theme(&'static str),
    Input(usize),
    Class(usize),
    Layer(String),
}

/// How the Units grid is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Index,
    Mean,
    Max,
    /// The IoU of each unit's concept, highest first.
    Iou,
}

impl Sort {
    pub fn name(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Mean => "mean",
            Self::Max => "max",
            Self::Iou => "concept IoU",
        }
    }
}

/// A concept of the Concepts screen: its label, its category (an index into the
/// vocabulary's), the units that detect it and their best IoU.
#[derive(Clone, Debug, PartialEq)]
pub struct ConceptRow {
    pub label: String,
    pub category: Option<usize>,
    pub units: Vec<usize>,
    pub best: f64,
}

/// Where a click lands, as the last frame drew it.
#[derive(Clone, Debug, PartialEq)]
pub enum Hit {
    Tab(Screen),
    Layer(usize),
    Unit(usize),
    Input(usize),
    Parameter(usize),
}

/// The Units screen.
pub struct UnitsState {
    pub layer: Option<String>,
    /// The selected position in the shown (sorted, filtered) order.
    pub cursor: usize,
    pub sort: Sort,
    pub filter: String,
    pub filtering: bool,
    /// Grid columns in the last frame (for up and down).
    pub columns: usize,
    /// Grid rows in the last frame (for a page).
    pub rows: usize,
}

/// Where the inspector keeps results between runs; none: computed every time.
#[derive(Clone, Default)]
struct Caches {
    search: Option<Cache>,
    featvis: Option<PathBuf>,
    dissect: Option<PathBuf>,
}

/// The Explain screen.
pub struct ExplainState {
    pub input: usize,
    pub method: String,
    pub target: TargetSpec,
    pub colormap: Colormap,
    /// Whether superpixel methods' maps show their superpixels' borders.
    pub outline: bool,
    pub params: Params,
    /// The parameter panel has the keys.
    pub editing: bool,
    pub param_cursor: usize,
    pub compare: bool,
}

pub struct App {
    pub theme: Theme,
    pub keys: Keymap,
    pub pictures: Pictures,
    pub card: Option<(PathBuf, ModelCard)>,
    pub model: Option<Arc<Model>>,
    /// Where models load ([`Setup::device`]).
    pub device: Device,
    pub source: Source,
    pub entries: Arc<Vec<Entry>>,
    pub compare_methods: Vec<String>,
    cache: Caches,
    visualize: bool,
    dissect: bool,
    concepts: Option<PathBuf>,
    /// The modality whose world the card's model is dissected against: the one
    /// whose plugin ships the card (found once, not per frame).
    world: Option<String>,
    pub screen: Screen,
    history: Vec<Screen>,
    pub overlay: Option<Overlay>,
    pub layer_cursor: usize,
    pub units: UnitsState,
    pub unit: Option<usize>,
    pub explain: ExplainState,
    pub inputs: HashMap<usize, Arc<InputView>>,
    pub explained: HashMap<ExplainKey, Arc<Explained>>,
    pub compared: HashMap<ExplainKey, Arc<Vec<Compared>>>,
    pub layers: HashMap<String, Arc<LayerView>>,
    /// Each unit's thumbnail, once made, by (layer, unit).
    pub thumbnails: HashMap<(String, usize), PictureId>,
    /// Each unit's feature visualization, once made.
    pub visuals: HashMap<(String, usize), PictureId>,
    /// A unit's diverse visualizations, once asked for and made.
    pub diverse: HashMap<(String, usize), Vec<PictureId>>,
    pub tiles: HashMap<(String, usize), Arc<Vec<Tile>>>,
    /// Each layer's Network Dissection, once made.
    pub dissections: HashMap<String, Arc<Dissected>>,
    /// Dissections and evidence pictures that failed, by slot and what they
    /// computed: not asked again this run (the status bar said why).
    given_up: HashSet<(&'static str, String)>,
    /// A unit's top concept images with its mask and label drawn, once made.
    pub evidence: HashMap<(String, usize), Vec<PictureId>>,
    /// The selected row of the Concepts screen.
    pub concept_cursor: usize,
    pub trust: Option<Arc<Vec<TrustRow>>>,
    /// Pictures made from results, by what they show.
    pub drawn: HashMap<String, PictureId>,
    runner: Runner<Output>,
    pub running: HashMap<JobId, Running>,
    pub status: Option<Message>,
    /// The slot whose failure the status bar shows: its next success clears it,
    /// and a broken input's error goes when another input is picked.
    failed: Option<&'static str>,
    pub hits: Vec<(Rect, Hit)>,
    /// Where `e` writes (the working directory).
    pub export_dir: PathBuf,
    pub quit: bool,
}

impl App {
    /// The inspector on `setup`; the model loads in the background.
    pub fn new(setup: Setup) -> Self {
        let Setup {
            card,
            model,
            source,
            theme,
            keys,
            pictures,
            compare,
            cache,
            visualize,
            dissect,
            concepts,
            notices,
            device,
        } = setup;
        let (entries, mut status) = match source.entries() {
            Ok(entries) => (entries, None),
            Err(e) => (Vec::new(), Some(error_message(&e))),
        };
        if !notices.is_empty() {
            status = Some(Message {
                text: notices.join("; "),
                error: true,
            });
        }
        let world = card
            .as_ref()
            .and_then(|(path, _)| modality::with_world_for(path));
        let mut app = Self {
            explain: ExplainState {
                input: 0,
                method: "grad-cam".into(),
                target: TargetSpec::Predicted,
                colormap: theme.colormap,
                outline: false,
                params: Params::new(),
                editing: false,
                param_cursor: 0,
                compare: false,
            },
            theme,
            keys,
            pictures,
            device,
            card,
            model: None,
            source,
            entries: Arc::new(entries),
            compare_methods: compare,
            cache: Caches {
                search: cache.as_ref().map(|root| Cache::new(root.join("search"))),
                featvis: cache.as_ref().map(|root| root.join("featvis")),
                dissect: cache.map(|root| root.join("dissect")),
            },
            visualize,
            concepts,
            world,
            dissect,
            dissections: HashMap::new(),
            given_up: HashSet::new(),
            evidence: HashMap::new(),
            concept_cursor: 0,
            visuals: HashMap::new(),
            diverse: HashMap::new(),
            screen: Screen::Model,
            history: Vec::new(),
            overlay: None,
            layer_cursor: 0,
            units: UnitsState {
                layer: None,
                cursor: 0,
                sort: Sort::Index,
                filter: String::new(),
                filtering: false,
                columns: 1,
                rows: 1,
            },
            unit: None,
            inputs: HashMap::new(),
            explained: HashMap::new(),
            compared: HashMap::new(),
            layers: HashMap::new(),
            tiles: HashMap::new(),
            trust: None,
            drawn: HashMap::new(),
            thumbnails: HashMap::new(),
            runner: Runner::new(),
            running: HashMap::new(),
            status,
            failed: None,
            hits: Vec::new(),
            export_dir: PathBuf::from("."),
            quit: false,
        };
        match model {
            Some(model) => app.model = Some(model),
            None => {
                let card = app.card.as_ref().map(|(_, card)| card.clone());
                let device = app.device.clone();
                app.submit("model", "", move |_| {
                    work::load_model(card.as_ref(), &device)
                });
            }
        }
        app
    }

    /// Cancels every running job.
    pub fn cancel_jobs(&mut self) {
        self.runner.cancel_all();
    }

    /// Starts `work` as the job of `slot` computing `what`, superseding the slot's
    /// older job, unless that job computes the same thing.
    fn submit(
        &mut self,
        slot: &'static str,
        what: impl Into<String>,
        work: impl FnOnce(&jobs::Context) -> Result<Output> + Send + 'static,
    ) {
        let what = what.into();
        if self
            .running
            .values()
            .any(|r| r.slot == slot && r.what == what)
        {
            return;
        }
        self.running.retain(|_, r| r.slot != slot);
        let id = self.runner.submit(slot, move |cx| {
            work::lower_this_thread();
            work(cx)
        });
        self.running.insert(
            id,
            Running {
                slot,
                what,
                progress: None,
            },
        );
    }

    /// Takes in job results, waiting up to `wait` for the first; whether anything
    /// changed.
    pub fn pump(&mut self, wait: Duration) -> bool {
        let mut changed = self.pictures.pump();
        let mut wait = wait;
        while let Some(event) = self.runner.recv_timeout(wait) {
            wait = Duration::ZERO;
            changed = true;
            match event {
                Event::Progress(id, progress) => {
                    if let Some(running) = self.running.get_mut(&id) {
                        running.progress = Some(progress);
                    }
                }
                Event::Finished(id, result) => {
                    let (slot, what) = self
                        .running
                        .remove(&id)
                        .map_or(("job", String::new()), |r| (r.slot, r.what));
                    match result {
                        Ok(output) => {
                            if self.failed == Some(slot) {
                                self.failed = None;
                                self.status = None;
                            }
                            self.take(output)
                        }
                        Err(e) if jobs::is_cancelled(&e) => {
                            self.say(format!("{slot}: cancelled"), false);
                        }
                        Err(e) => {
                            if matches!(slot, "dissect" | "evidence") {
                                self.given_up.insert((slot, what));
                            }
                            self.fail(slot, &e)
                        }
                    }
                }
            }
        }
        changed
    }

    /// Whether a job is running.
    pub fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    fn take(&mut self, output: Output) {
        match output {
            Output::Model(model) => {
                self.model = Some(model);
                self.request_current();
            }
            Output::Input(index, view) => {
                self.inputs.insert(index, view);
                self.forget_far_inputs();
                self.request_current();
            }
            Output::Explained(key, explained) => {
                self.explained.insert(key, explained);
            }
            Output::Compared(key, rows) => {
                self.compared.insert(key, rows);
            }
            Output::Layer(view) => {
                if !view.notes.is_empty() {
                    self.say(view.notes.join("; "), true);
                }
                self.layers.insert(view.stats.layer.clone(), view);
                self.request_current();
            }
            Output::Visuals(layer, made, notes) => {
                if !notes.is_empty() {
                    self.say(notes.join("; "), true);
                }
                for (unit, image) in made {
                    let id = self.pictures.add(image);
                    if let Some(old) = self.visuals.insert((layer.clone(), unit), id) {
                        self.pictures.remove(old);
                    }
                }
                self.request_current();
            }
            Output::Diverse(layer, unit, images, notes) => {
                if !notes.is_empty() {
                    self.say(notes.join("; "), true);
                }
                let ids = images.into_iter().map(|i| self.pictures.add(i)).collect();
                self.diverse.insert((layer, unit), ids);
            }
            Output::Thumbnails(layer, made) => {
                for (unit, image) in made {
                    let id = self.pictures.add(image);
                    if let Some(old) = self.thumbnails.insert((layer.clone(), unit), id) {
                        self.pictures.remove(old);
                    }
                }
                // The next batch: newly visible cells, or the rest of the layer.
                self.request_current();
            }
            Output::Unit(layer, unit, tiles) => {
                self.tiles.insert((layer, unit), tiles);
            }
            Output::Dissection(dissected) => {
                if !dissected.notes.is_empty() {
                    self.say(dissected.notes.join("; "), true);
                }
                self.dissections
                    .insert(dissected.layer.layer.clone(), dissected);
                self.request_current();
            }
            Output::Evidence(layer, unit, pictures) => {
                let ids = pictures.into_iter().map(|p| self.pictures.add(p)).collect();
                self.evidence.insert((layer, unit), ids);
            }
            Output::Trust(rows) => self.trust = Some(rows),
            Output::Exported(paths) => {
                let first = paths
                    .first()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                self.say(format!("exported {} file(s): {first}…", paths.len()), false);
            }
        }
    }

    /// Past [`KEPT_INPUTS`] read inputs, forgets those farthest from the current
    /// one, with their maps and pictures: browsing a folder of photos must not
    /// hold them all decoded.
    fn forget_far_inputs(&mut self) {
        while self.inputs.len() > KEPT_INPUTS {
            let current = self.explain.input;
            let Some(&far) = self.inputs.keys().max_by_key(|&&i| i.abs_diff(current)) else {
                return;
            };
            self.inputs.remove(&far);
            self.explained.retain(|k, _| k.input != far);
            self.compared.retain(|k, _| k.input != far);
            let prefixes = [format!("input:{far}"), format!("heat:{far}:")];
            let pictures = &mut self.pictures;
            self.drawn.retain(|name, id| {
                let gone = prefixes
                    .iter()
                    .any(|p| name == p || (p.ends_with(':') && name.starts_with(p.as_str())));
                if gone {
                    pictures.remove(*id);
                }
                !gone
            });
        }
    }

    fn fail(&mut self, slot: &'static str, e: &anyhow::Error) {
        let mut message = error_message(e);
        self.failed = Some(slot);
        if slot == "model" && self.card.is_some() {
            // Stays: the demo model loading next is no news about the card.
            self.failed = None;
            // The rest stays usable: the demo model and its scenes.
            message.text = format!("{}; opened the embedded demo model instead", message.text);
            self.card = None;
            self.world = None;
            self.model = None;
            // Nothing computed with the other model may show under the demo model.
            self.inputs.clear();
            self.explained.clear();
            self.compared.clear();
            self.layers.clear();
            let made = self
                .thumbnails
                .drain()
                .chain(self.visuals.drain())
                .map(|(_, id)| id);
            let diverse = self.diverse.drain().flat_map(|(_, ids)| ids);
            let evidence = self.evidence.drain().flat_map(|(_, ids)| ids);
            for id in made.chain(diverse).chain(evidence).collect::<Vec<_>>() {
                self.pictures.remove(id);
            }
            self.dissections.clear();
            self.given_up.clear();
            self.tiles.clear();
            self.trust = None;
            self.source = Source::Demo(64);
            self.entries = Arc::new(self.source.entries().unwrap_or_default());
            let device = self.device.clone();
            self.submit("model", "", move |_| work::load_model(None, &device));
        }
        self.status = Some(message);
    }

    fn say(&mut self, text: String, error: bool) {
        self.failed = None;
        self.status = Some(Message { text, error });
    }

    // ---- keys and clicks ----

    /// Does what `event` asks.
    pub fn key(&mut self, event: KeyEvent) {
        if self.overlay.is_some() {
            return self.overlay_key(event);
        }
        if self.units.filtering && self.screen == Screen::Units {
            return self.filter_key(event);
        }
        let editing = self.explain.editing && self.screen == Screen::Explain;
        if editing && event.code == KeyCode::Enter {
            return self.edit_selected_param();
        }
        let Some(action) = self.keys.action(&event, self.screen) else {
            return;
        };
        if editing {
            match action {
                Action::Up => {
                    return self.explain.param_cursor = self.explain.param_cursor.saturating_sub(1);
                }
                Action::Down => {
                    let last = self.method_params().len().saturating_sub(1);
                    return self.explain.param_cursor = (self.explain.param_cursor + 1).min(last);
                }
                Action::Back | Action::EditParameters => return self.explain.editing = false,
                _ => {}
            }
        }
        self.act(action);
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.overlay = Some(Overlay::Help),
            Action::Palette => self.overlay = Some(Overlay::Finder(self.palette())),
            Action::Back => self.back(),
            Action::NextScreen => self.go(self.screen.next()),
            Action::PreviousScreen => self.go(self.screen.previous()),
            Action::Up => self.step(-1),
            Action::Down => self.step(1),
            Action::Left => self.step_units(-1),
            Action::Right => self.step_units(1),
            Action::PageUp => self.page(-1),
            Action::PageDown => self.page(1),
            Action::Top => self.step(isize::MIN / 2),
            Action::Bottom => self.step(isize::MAX / 2),
            Action::Open => self.open(),
            Action::Filter => self.units.filtering = true,
            Action::Export => self.export(),
            Action::Sort => {
                self.units.sort = match self.units.sort {
                    Sort::Index => Sort::Mean,
                    Sort::Mean => Sort::Max,
                    Sort::Max if self.open_dissection().is_some() => Sort::Iou,
                    Sort::Max | Sort::Iou => Sort::Index,
                };
                self.units.cursor = 0;
            }
            Action::ExplainUnit => self.explain_unit(),
            Action::Diverse => self.request_diverse(),
            Action::NextMethod => self.cycle_method(1),
            Action::PreviousMethod => self.cycle_method(-1),
            Action::NextTarget => self.cycle_target(),
            Action::PickClass => self.overlay = Some(Overlay::Finder(self.class_finder())),
            Action::NextLayer => self.cycle_cam_layer(),
            Action::NextColormap => {
                let all = Colormap::ALL;
                let i = all
                    .iter()
                    .position(|c| *c == self.explain.colormap)
                    .unwrap_or(0);
                self.explain.colormap = all[(i + 1) % all.len()];
            }
            Action::Outline => self.explain.outline = !self.explain.outline,
            Action::PickInput => self.overlay = Some(Overlay::Finder(self.input_finder())),
            Action::NextInput => self.set_input(self.explain.input.saturating_add(1)),
            Action::PreviousInput => self.set_input(self.explain.input.saturating_sub(1)),
            Action::EditParameters => {
                self.explain.editing = !self.explain.editing;
                self.explain.param_cursor = 0;
            }
            Action::Compare => {
                self.explain.compare = !self.explain.compare;
                self.request_current();
            }
            Action::Run => self.request_trust(),
        }
    }

    fn overlay_key(&mut self, event: KeyEvent) {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        match self.overlay.as_mut() {
            Some(Overlay::Help) => {
                // Any key closes the help, as in less; q too, without quitting.
                self.overlay = None;
            }
            Some(Overlay::Finder(finder)) => match event.code {
                KeyCode::Esc => self.overlay = None,
                KeyCode::Enter => {
                    let pick = finder.chosen().cloned();
                    self.overlay = None;
                    if let Some(pick) = pick {
                        self.pick(pick);
                    }
                }
                KeyCode::Up => finder.step(-1),
                KeyCode::Down => finder.step(1),
                KeyCode::Char('p') if ctrl => finder.step(-1),
                KeyCode::Char('n') if ctrl => finder.step(1),
                KeyCode::Char('c') if ctrl => self.overlay = None,
                KeyCode::Backspace => finder.pop(),
                KeyCode::Char(c) => finder.push(c),
                _ => {}
            },
            Some(Overlay::Edit { param, text }) => match event.code {
                KeyCode::Esc => self.overlay = None,
                KeyCode::Enter => {
                    let (param, text) = (*param, text.clone());
                    self.overlay = None;
                    self.set_param(param, &text);
                }
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !ctrl => text.push(c),
                _ => {}
            },
            None => {}
        }
    }

    fn filter_key(&mut self, event: KeyEvent) {
        match event.code {
            KeyCode::Esc => {
                self.units.filter.clear();
                self.units.filtering = false;
            }
            KeyCode::Enter => self.units.filtering = false,
            KeyCode::Backspace => {
                self.units.filter.pop();
            }
            KeyCode::Char(c) => self.units.filter.push(c),
            _ => {}
        }
        self.units.cursor = 0;
    }

    /// Does what a mouse event asks: a click selects what it lands on, the wheel
    /// moves the selection.
    pub fn mouse(&mut self, event: MouseEvent) {
        if self.overlay.is_some() {
            return;
        }
        match event.kind {
            MouseEventKind::ScrollUp => self.step(-1),
            MouseEventKind::ScrollDown => self.step(1),
            MouseEventKind::Down(MouseButton::Left) => {
                let at = (event.column, event.row);
                let hit = self
                    .hits
                    .iter()
                    .find(|(r, _)| r.contains(at.into()))
                    .map(|(_, h)| h.clone());
                match hit {
                    Some(Hit::Tab(screen)) => self.go(screen),
                    Some(Hit::Layer(i)) => {
                        if self.layer_cursor == i {
                            self.open();
                        }
                        self.layer_cursor = i;
                    }
                    Some(Hit::Unit(position)) => {
                        if self.units.cursor == position {
                            self.open();
                        }
                        self.units.cursor = position;
                    }
                    Some(Hit::Input(i)) => self.set_input(i),
                    Some(Hit::Parameter(i)) => {
                        self.explain.editing = true;
                        self.explain.param_cursor = i;
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }

    // ---- navigation ----

    fn go(&mut self, screen: Screen) {
        if screen == self.screen {
            return;
        }
        self.history.push(self.screen);
        self.screen = screen;
        self.request_current();
    }

    fn back(&mut self) {
        if self.explain.editing && self.screen == Screen::Explain {
            self.explain.editing = false;
        } else if self.busy() {
            self.runner.cancel_all();
        } else if let Some(screen) = self.history.pop() {
            self.screen = screen;
            self.request_current();
        }
    }

    fn step(&mut self, by: isize) {
        match self.screen {
            Screen::Model => {
                let n = self.layer_count();
                self.layer_cursor = clamp_step(self.layer_cursor, by, n);
            }
            Screen::Units => {
                let columns = self.units.columns.max(1) as isize;
                let n = self.shown_units().len();
                self.units.cursor = clamp_step(self.units.cursor, by.saturating_mul(columns), n);
                self.request_current();
            }
            Screen::Unit => {
                let n = self.shown_units().len();
                self.units.cursor = clamp_step(self.units.cursor, by, n);
                self.unit = self.shown_units().get(self.units.cursor).copied();
                self.request_current();
            }
            Screen::Explain => {
                let n = self.entries.len();
                let input = clamp_step(self.explain.input, by, n);
                self.set_input(input);
            }
            Screen::Concepts => {
                let n = self.concept_rows().len();
                self.concept_cursor = clamp_step(self.concept_cursor, by, n);
            }
            Screen::Trust => {}
        }
    }

    fn step_units(&mut self, by: isize) {
        let n = self.shown_units().len();
        self.units.cursor = clamp_step(self.units.cursor, by, n);
        self.request_current();
    }

    fn page(&mut self, by: isize) {
        let rows = match self.screen {
            Screen::Units => self.units.rows.max(1),
            _ => 10,
        };
        self.step(by * rows as isize);
    }

    fn open(&mut self) {
        match self.screen {
            Screen::Model => {
                let Some(layer) = self.layer_names().get(self.layer_cursor).cloned() else {
                    return;
                };
                if self.units.layer.as_ref() != Some(&layer) {
                    self.units.cursor = 0;
                    self.units.filter.clear();
                }
                self.units.layer = Some(layer);
                self.go(Screen::Units);
            }
            Screen::Units => {
                let Some(&unit) = self.shown_units().get(self.units.cursor) else {
                    return;
                };
                self.unit = Some(unit);
                self.go(Screen::Unit);
            }
            Screen::Concepts => {
                // The units of the chosen concept, on the Units screen.
                let Some(row) = self.concept_rows().into_iter().nth(self.concept_cursor) else {
                    return;
                };
                self.units.filter = format!("={}", row.label);
                self.units.sort = Sort::Iou;
                self.units.cursor = 0;
                self.go(Screen::Units);
            }
            _ => {}
        }
    }

    fn pick(&mut self, pick: Pick) {
        match pick {
            Pick::Act(action) => self.act(action),
            Pick::Screen(screen) => self.go(screen),
            Pick::Method(method) => {
                self.explain.method = method;
                self.go(Screen::Explain);
                self.request_current();
            }
            Pick::Colormap(colormap) => self.explain.colormap = colormap,
            Pick::Theme(name) => match Theme::load(name) {
                Ok(theme) => self.theme = theme,
                Err(e) => self.say(error_message(&e).text, true),
            },
            Pick::Input(i) => self.set_input(i),
            Pick::Class(c) => {
                self.explain.target = TargetSpec::Class(c);
                self.request_current();
            }
            Pick::Layer(layer) => {
                self.layer_cursor = self
                    .layer_names()
                    .iter()
                    .position(|l| *l == layer)
                    .unwrap_or(0);
                self.screen = Screen::Model;
                self.open();
            }
        }
    }

    // ---- the palette and finders ----

    fn palette(&self) -> Finder<Pick> {
        let mut items: Vec<(String, Pick)> = Screen::ALL
            .iter()
            .map(|s| (format!("go to {}", s.title()), Pick::Screen(*s)))
            .collect();
        for (action, name, help) in super::keys::actions() {
            if !matches!(
                action,
                Action::Palette | Action::Up | Action::Down | Action::Left | Action::Right
            ) {
                items.push((format!("{name}: {help}"), Pick::Act(action)));
            }
        }
        for method in self.method_names() {
            items.push((format!("method {method}"), Pick::Method(method)));
        }
        for colormap in Colormap::ALL {
            items.push((format!("colormap {colormap}"), Pick::Colormap(*colormap)));
        }
        for theme in Theme::names() {
            items.push((format!("theme {theme}"), Pick::Theme(theme)));
        }
        for layer in self.layer_names() {
            items.push((format!("layer {layer}"), Pick::Layer(layer)));
        }
        Finder::new("command", items)
    }

    fn input_finder(&self) -> Finder<Pick> {
        let items = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), Pick::Input(i)))
            .collect();
        Finder::new("input", items)
    }

    fn class_finder(&self) -> Finder<Pick> {
        let labels = self
            .model
            .as_ref()
            .map(|m| m.labels().to_vec())
            .unwrap_or_default();
        let items = labels
            .into_iter()
            .enumerate()
            .map(|(i, l)| (format!("{i} {l}"), Pick::Class(i)))
            .collect();
        Finder::new("class", items)
    }

    // ---- the Explain screen ----

    /// Every method the Explain screen cycles through, as the registry lists them.
    pub fn method_names(&self) -> Vec<String> {
        registry::descriptors()
            .into_iter()
            .map(|d| d.name.to_string())
            .collect()
    }

    fn cycle_method(&mut self, by: isize) {
        let names = self.method_names();
        let i = names
            .iter()
            .position(|n| *n == self.explain.method)
            .unwrap_or(0);
        let next = (i as isize + by).rem_euclid(names.len() as isize) as usize;
        self.explain.method = names[next].clone();
        self.explain.param_cursor = 0;
        self.request_current();
    }

    /// Predicted, then the input's other top classes, then the selected unit.
    fn cycle_target(&mut self) {
        let top: Vec<usize> = self
            .inputs
            .get(&self.explain.input)
            .map(|v| v.top.iter().map(|p| p.index).collect())
            .unwrap_or_default();
        let mut cycle = vec![TargetSpec::Predicted];
        cycle.extend(top.iter().skip(1).map(|&c| TargetSpec::Class(c)));
        if let Some(unit) = self.selected_unit() {
            cycle.push(TargetSpec::Unit(unit));
        }
        let i = cycle.iter().position(|t| *t == self.explain.target);
        self.explain.target = cycle[i.map_or(0, |i| (i + 1) % cycle.len())].clone();
        self.request_current();
    }

    /// The selected unit of the Units screen, as a target.
    pub fn selected_unit(&self) -> Option<UnitAddress> {
        let layer = self.units.layer.clone()?;
        let channel = match self.screen {
            Screen::Unit => self.unit?,
            _ => *self.shown_units().get(self.units.cursor)?,
        };
        Some(UnitAddress {
            layer,
            channel,
            position: None,
        })
    }

    fn explain_unit(&mut self) {
        let Some(unit) = self.selected_unit() else {
            return self.say("open a layer and select a unit first".into(), true);
        };
        self.explain.target = TargetSpec::Unit(unit);
        self.go(Screen::Explain);
        self.request_current();
    }

    /// The layers a CAM can read: those with feature maps.
    pub fn cam_layers(&self) -> Vec<String> {
        let Some(model) = &self.model else {
            return Vec::new();
        };
        let layers = model.layers().map(|l| l.to_vec()).unwrap_or_default();
        layers
            .into_iter()
            .filter(|l| l.shape.len() == 3 && l.shape[1] * l.shape[2] > 1)
            .map(|l| l.name)
            .collect()
    }

    /// The CAM layer in force: the one set, or the model's default.
    pub fn cam_layer(&self) -> Option<String> {
        match self.explain.params.layers(&LAYER) {
            Ok(layers) => layers.first().cloned(),
            Err(_) => self
                .model
                .as_ref()
                .and_then(|m| unitscope::attribution::default_cam_layer(m).ok()),
        }
    }

    fn cycle_cam_layer(&mut self) {
        let layers = self.cam_layers();
        if layers.is_empty() {
            return;
        }
        let current = self.cam_layer();
        let i = layers
            .iter()
            .position(|l| Some(l) == current.as_ref())
            .map_or(0, |i| (i + 1) % layers.len());
        self.explain
            .params
            .set(LAYER.name, Value::Layers(vec![layers[i].clone()]));
        self.request_current();
    }

    /// The current method's parameters, with their values in force.
    pub fn method_params(
        &self,
    ) -> Vec<(&'static unitscope::attribution::descriptor::Param, String)> {
        let Ok(descriptors) = registry::resolve(&self.explain.method) else {
            return Vec::new();
        };
        let params = self.params();
        let mut seen = Vec::new();
        for p in descriptors.iter().flat_map(|d| d.params) {
            if !seen.iter().any(
                |(q, _): &(&'static unitscope::attribution::descriptor::Param, String)| {
                    q.name == p.name
                },
            ) {
                let value = params
                    .get(p)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| "-".into());
                seen.push((p, value));
            }
        }
        seen
    }

    /// The parameters in force: those set, and the CAM layer defaulted.
    pub fn params(&self) -> Params {
        let mut params = self.explain.params.clone();
        if params.get(&LAYER).is_err()
            && let Some(layer) = self.cam_layer()
        {
            params.set(LAYER.name, Value::Layers(vec![layer]));
        }
        params
    }

    /// Opens the editor on the selected parameter (Enter in the panel).
    pub fn edit_selected_param(&mut self) {
        let params = self.method_params();
        if let Some((param, value)) = params.get(self.explain.param_cursor) {
            self.overlay = Some(Overlay::Edit {
                param: param.name,
                text: value.clone(),
            });
        }
    }

    fn set_param(&mut self, name: &str, text: &str) {
        let Some(param) = registry::parameters().into_iter().find(|p| p.name == name) else {
            return;
        };
        match param.parse(text.trim()) {
            Ok(value) => {
                self.explain.params.set(param.name, value);
                self.request_current();
            }
            Err(e) => self.say(format!("--{name}: {e}"), true),
        }
    }

    fn set_input(&mut self, input: usize) {
        let last = self.entries.len().saturating_sub(1);
        self.explain.input = input.min(last);
        if self.failed == Some("input") {
            // That error was about the input left behind.
            self.failed = None;
            self.status = None;
        }
        self.request_current();
    }

    /// The key of the current explanation.
    pub fn explain_key(&self) -> ExplainKey {
        let params = registry::values(&self.explain.method, &self.params())
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        ExplainKey {
            input: self.explain.input,
            method: self.explain.method.clone(),
            target: target_text(&self.explain.target),
            params: if self.explain.compare {
                format!("compare {:?} {params}", self.compare_methods)
            } else {
                params
            },
        }
    }

    /// Asks for whatever the current screen shows and is not cached.
    pub fn request_current(&mut self) {
        let Some(model) = self.model.clone() else {
            return;
        };
        match self.screen {
            Screen::Model => {}
            Screen::Units | Screen::Unit => {
                self.request_layer(&model);
                self.request_dissection(&model);
            }
            Screen::Concepts => self.request_dissection(&model),
            Screen::Explain => self.request_explanation(&model),
            Screen::Trust => {
                if self.trust.is_none() && !self.running.values().any(|r| r.slot == "trust") {
                    self.request_trust();
                }
            }
        }
    }

    fn request_layer(&mut self, model: &Arc<Model>) {
        let Some(layer) = self.units.layer.clone() else {
            return;
        };
        let Some(view) = self.layers.get(&layer).cloned() else {
            let entries: Vec<Entry> = self.entries.iter().take(STATS_INPUTS).cloned().collect();
            let (model, cache) = (model.clone(), self.cache.search.clone());
            self.submit("layer", layer.clone(), move |cx| {
                work::layer(&model, &layer, &entries, cache.as_ref(), cx)
            });
            return;
        };
        if self.screen == Screen::Units {
            self.request_thumbnails(model, &layer, view);
            self.request_visuals(model, &layer);
            return;
        }
        let Some(unit) = self.unit else {
            return;
        };
        if !self.tiles.contains_key(&(layer.clone(), unit)) {
            let (model, entries) = (model.clone(), self.entries.clone());
            let colormap = self.theme.colormap;
            let layer = layer.clone();
            self.submit("unit", format!("{layer}:{unit}"), move |_| {
                work::unit(&model, &view, unit, &entries, colormap)
            });
        }
        if self.visualizing() && !self.visuals.contains_key(&(layer.clone(), unit)) {
            self.submit_visuals(model, &layer, vec![unit]);
        }
    }

    /// Where the open model's layers are dissected against: the `--concepts`
    /// dataset, else the demo world for the demo model, or a modality's world for
    /// the card its plugin ships; none for another card without a dataset.
    pub fn concept_source(&self) -> Option<Concepts> {
        match (&self.concepts, &self.card) {
            _ if !self.dissect => None,
            (Some(dir), _) => Some(Concepts::Broden(dir.clone())),
            (None, None) => Some(Concepts::Demo),
            (None, Some(_)) => self.world.clone().map(Concepts::World),
        }
    }

    /// The open layer's dissection, once made.
    pub fn open_dissection(&self) -> Option<&Arc<Dissected>> {
        self.dissections.get(self.units.layer.as_ref()?)
    }

    /// A note for where the open layer's dissection would be: its progress, its
    /// failure, or that it waits.
    pub fn dissection_note(&self) -> String {
        let failed = self
            .units
            .layer
            .as_ref()
            .is_some_and(|l| self.given_up.contains(&("dissect", l.clone())));
        match super::view::progress(self, "dissect") {
            Some(progress) => progress,
            None if failed => "the dissection failed (the status bar says why)".into(),
            None => "…".into(),
        }
    }

    /// The open layer's dissection, when there is concept data and it is not made
    /// yet; then the open unit's evidence pictures.
    fn request_dissection(&mut self, model: &Arc<Model>) {
        let (Some(layer), Some(concepts)) = (self.units.layer.clone(), self.concept_source())
        else {
            return;
        };
        let Some(dissected) = self.dissections.get(&layer).cloned() else {
            if !self.given_up.contains(&("dissect", layer.clone())) {
                let (model, cache) = (model.clone(), self.cache.dissect.clone());
                self.submit("dissect", layer.clone(), move |cx| {
                    work::dissect(&model, &layer, &concepts, cache.as_deref(), cx)
                });
            }
            return;
        };
        if self.screen != Screen::Unit {
            return;
        }
        let Some(unit) = self.unit else {
            return;
        };
        let what = format!("{layer}:{unit}");
        if !self.evidence.contains_key(&(layer.clone(), unit))
            && !self.given_up.contains(&("evidence", what.clone()))
        {
            let model = model.clone();
            self.submit("evidence", what, move |_| {
                work::evidence(&model, &dissected, unit)
            });
        }
    }

    /// The open layer's concepts with detectors: each label with its category,
    /// how many units detect it and their best IoU, most detectors first.
    pub fn concept_rows(&self) -> Vec<ConceptRow> {
        let Some(dissected) = self.open_dissection() else {
            return Vec::new();
        };
        let mut rows: Vec<ConceptRow> = Vec::new();
        for (unit, result) in dissected.layer.units.iter().enumerate() {
            if !result.detector {
                continue;
            }
            match rows.iter_mut().find(|r| r.label == result.best.label) {
                Some(row) => {
                    row.units.push(unit);
                    row.best = row.best.max(result.best.iou);
                }
                None => rows.push(ConceptRow {
                    label: result.best.label.clone(),
                    category: dissected.category[unit],
                    units: vec![unit],
                    best: result.best.iou,
                }),
            }
        }
        rows.sort_by(|a, b| {
            (b.units.len().cmp(&a.units.len()))
                .then(b.best.total_cmp(&a.best))
                .then(a.label.cmp(&b.label))
        });
        rows
    }

    /// Feature visualizations for the grid's visible cells that lack one, then the
    /// rest of the layer in batches, as [`App::request_thumbnails`] does crops.
    fn request_visuals(&mut self, model: &Arc<Model>, layer: &str) {
        if !self.visualizing() {
            return;
        }
        let units = self.next_batch(layer, &self.visuals);
        if !units.is_empty() {
            self.submit_visuals(model, layer, units);
        }
    }

    fn submit_visuals(&mut self, model: &Arc<Model>, layer: &str, units: Vec<usize>) {
        let (model, cache, layer) = (model.clone(), self.cache.featvis.clone(), layer.to_string());
        self.submit("visuals", format!("{layer} {units:?}"), move |cx| {
            work::visuals(&model, &layer, &units, cache.as_deref(), cx)
        });
    }

    /// Whether units get feature visualizations: asked for, and the model reads
    /// pictures (a text model's units are shown over text instead).
    pub fn visualizing(&self) -> bool {
        self.visualize && !self.reads_text()
    }

    /// Whether the model reads text (a sequence model), not pictures.
    pub fn reads_text(&self) -> bool {
        self.model
            .as_ref()
            .is_some_and(|m| m.architecture().is_sequence())
    }

    /// Asks for the open unit's diverse visualizations.
    fn request_diverse(&mut self) {
        let (Some(model), Some(layer), Some(unit)) =
            (self.model.clone(), self.units.layer.clone(), self.unit)
        else {
            return;
        };
        if self.diverse.contains_key(&(layer.clone(), unit)) || !self.visualizing() {
            return;
        }
        let cache = self.cache.featvis.clone();
        self.submit("diverse", format!("{layer}:{unit}"), move |cx| {
            work::diverse(&model, &layer, unit, cache.as_deref(), cx)
        });
    }

    /// The units of `layer` to make pictures for next, given those `made`: the
    /// grid's visible cells that lack one, else the next [`THUMBNAIL_BATCH`] in the
    /// shown order.
    fn next_batch(&self, layer: &str, made: &HashMap<(String, usize), PictureId>) -> Vec<usize> {
        let shown = self.shown_units();
        let lacks = |unit: &&usize| !made.contains_key(&(layer.to_owned(), **unit));
        let visible = self.visible_positions(shown.len());
        let units: Vec<usize> = shown[visible].iter().filter(lacks).copied().collect();
        if !units.is_empty() {
            return units;
        }
        shown
            .iter()
            .filter(lacks)
            .take(THUMBNAIL_BATCH)
            .copied()
            .collect()
    }

    /// Thumbnails for the grid's visible cells that lack one; once they all have
    /// one, the next [`THUMBNAIL_BATCH`] of the layer in the shown order, so
    /// scrolling finds them made. Each batch's arrival asks for the next.
    fn request_thumbnails(&mut self, model: &Arc<Model>, layer: &str, view: Arc<LayerView>) {
        let units = self.next_batch(layer, &self.thumbnails);
        if units.is_empty() {
            return;
        }
        let (model, entries) = (model.clone(), self.entries.clone());
        self.submit("thumbnails", format!("{layer} {units:?}"), move |_| {
            work::thumbnails(&model, &view, &units, &entries)
        });
    }

    /// The positions (in the shown order) of the Units grid's visible cells: the
    /// rows that keep the cursor's row on screen, as the last frame laid them out
    /// (before the first frame, one batch's worth).
    pub fn visible_positions(&self, shown: usize) -> std::ops::Range<usize> {
        let (columns, rows) = (self.units.columns.max(1), self.units.rows);
        if rows == 0 {
            return 0..THUMBNAIL_BATCH.min(shown);
        }
        let first_row = (self.units.cursor / columns).saturating_sub(rows - 1);
        let start = (first_row * columns).min(shown);
        start..(start + rows * columns).min(shown)
    }

    fn request_explanation(&mut self, model: &Arc<Model>) {
        let index = self.explain.input;
        let Some(input) = self.inputs.get(&index).cloned() else {
            let Some(entry) = self.entries.get(index).cloned() else {
                return;
            };
            let model = model.clone();
            self.submit("input", index.to_string(), move |_| {
                work::load_input(&model, index, &entry)
            });
            return;
        };
        let key = self.explain_key();
        let request = Request {
            key: key.clone(),
            input,
            target: self.explain.target.clone(),
            params: self.params(),
        };
        let model = model.clone();
        if self.explain.compare {
            if !self.compared.contains_key(&key) {
                let methods = self.compare_methods.clone();
                let what = format!("{key:?}");
                self.submit("compare", what, move |cx| {
                    work::compare(&model, &request, &methods, cx)
                });
            }
        } else if !self.explained.contains_key(&key) {
            self.submit("explain", format!("{key:?}"), move |_| {
                work::explain(&model, &request)
            });
        }
    }

    fn request_trust(&mut self) {
        let Some(model) = self.model.clone() else {
            return;
        };
        let (methods, params, entries) = (
            self.compare_methods.clone(),
            self.params(),
            self.entries.clone(),
        );
        self.trust = None;
        self.submit("trust", "", move |cx| {
            work::trust(&model, &methods, &params, &entries, cx)
        });
    }

    // ---- the Units screen ----

    /// The model's layer names, in forward order.
    pub fn layer_names(&self) -> Vec<String> {
        self.model
            .as_ref()
            .and_then(|m| m.layers().ok())
            .map(|l| l.iter().map(|l| l.name.clone()).collect())
            .unwrap_or_default()
    }

    fn layer_count(&self) -> usize {
        self.model
            .as_ref()
            .and_then(|m| m.layers().ok())
            .map_or(0, |l| l.len())
    }

    /// The open layer's units in the order shown: filtered (by number, or by the
    /// concept or category of the unit's label, or with `=concept` its detectors),
    /// sorted.
    pub fn shown_units(&self) -> Vec<usize> {
        let Some(view) = self.units.layer.as_ref().and_then(|l| self.layers.get(l)) else {
            return Vec::new();
        };
        let units = &view.stats.units;
        let dissected = self.open_dissection();
        let concept = |u: usize| dissected.and_then(|d| d.layer.units.get(u));
        let filter = self.units.filter.trim().to_lowercase();
        let detector_of = filter.strip_prefix('=');
        let mut shown: Vec<usize> = (0..units.len())
            .filter(|&u| {
                if let Some(label) = detector_of {
                    return concept(u)
                        .is_some_and(|c| c.detector && c.best.label.to_lowercase() == label);
                }
                filter.is_empty()
                    || u.to_string().contains(&filter)
                    || concept(u).is_some_and(|c| {
                        c.best.label.to_lowercase().contains(&filter)
                            || c.best.category.to_lowercase().contains(&filter)
                    })
            })
            .collect();
        let iou = |u: usize| concept(u).map_or(0.0, |c| c.best.iou);
        match self.units.sort {
            Sort::Index => {}
            Sort::Mean => shown.sort_by(|&a, &b| units[b].mean.total_cmp(&units[a].mean)),
            Sort::Max => shown.sort_by(|&a, &b| units[b].max.total_cmp(&units[a].max)),
            Sort::Iou => shown.sort_by(|&a, &b| iou(b).total_cmp(&iou(a))),
        }
        shown
    }

    // ---- export ----

    fn export(&mut self) {
        let Some(model) = self.model.clone() else {
            return;
        };
        let job = super::export::job(self, &model);
        match job {
            Ok(job) => self.submit("export", format!("{:?}", std::time::Instant::now()), job),
            Err(e) => self.say(error_message(&e).text, true),
        }
    }
}

/// `at` moved by `by`, within `0..n`.
fn clamp_step(at: usize, by: isize, n: usize) -> usize {
    at.saturating_add_signed(by).min(n.saturating_sub(1))
}

/// A target as the options write it.
pub fn target_text(target: &TargetSpec) -> String {
    match target {
        TargetSpec::Predicted => "predicted".into(),
        TargetSpec::Class(c) => c.to_string(),
        TargetSpec::Unit(unit) => unit.to_string(),
    }
}

/// An error as one status line.
pub fn error_message(e: &anyhow::Error) -> Message {
    Message {
        text: format!("{e:#}").replace('\n', " "),
        error: true,
    }
}
