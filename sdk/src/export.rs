//! What [`export_plugin!`](crate::export_plugin) expands to: the entry symbol's
//! body, the plugin's static description built once, and the guard around every
//! call the host makes, which turns errors and panics into a status and text.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Once, OnceLock};

use crate::abi::{
    ABI_MAJOR, ABI_MINOR, KIND_METHOD, KIND_MODALITY, US_CANCELLED, US_ERROR, US_OK, UsChoice,
    UsMethod, UsModality, UsParam, UsPlugin, UsStr, UsText, UsWorld,
};
use crate::{Error, Method, Modality, Param};

/// The plugin's description and everything it points into, made once.
struct Exported {
    plugin: UsPlugin,
    instance: Box<dyn Any + Send + Sync>,
    // Pointed into by `plugin`; kept for the life of the process.
    _method: Option<Box<UsMethod>>,
    _modality: Option<Box<UsModality>>,
    _world: Option<Box<UsWorld>>,
    _params: Vec<UsParam>,
    _choices: Vec<Vec<UsChoice>>,
    /// A modality's extensions, then its world's classes, concepts, categories and
    /// tracks.
    _names: [Vec<UsStr>; 5],
}

// SAFETY: the raw pointers in `Exported` point into its own boxes and static text,
// never written after it is made.
unsafe impl Send for Exported {}
unsafe impl Sync for Exported {}

/// A cdylib exports one plugin, so one description.
static EXPORTED: OnceLock<Exported> = OnceLock::new();

thread_local! {
    /// The last panic's message on this thread, as the hook caught it.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The entry for a method plugin.
///
/// # Safety
/// `error` is null or valid for a write.
pub unsafe fn method<M: Method>(
    host_major: u32,
    _host_minor: u32,
    error: *mut UsText,
) -> *const UsPlugin {
    entry(host_major, error, || {
        let params = M::params();
        check_params(&params)?;
        let choices: Vec<Vec<UsChoice>> = params.iter().map(Param::abi_choices).collect();
        let raw: Vec<UsParam> = params
            .iter()
            .zip(&choices)
            .map(|(p, c)| p.to_abi(c))
            .collect();
        let method = Box::new(UsMethod {
            size: size_of::<UsMethod>() as u32,
            citation: UsStr::new(M::CITATION),
            params: raw.as_ptr(),
            n_params: raw.len(),
            attribute: Some(crate::method::attribute::<M>),
            passes: Some(crate::method::passes::<M>),
        });
        let mut plugin = description(KIND_METHOD, [M::NAME, M::VERSION, M::ABOUT]);
        plugin.method = &*method;
        Ok(Exported {
            plugin,
            instance: Box::new(M::default()),
            _method: Some(method),
            _modality: None,
            _world: None,
            _params: raw,
            _choices: choices,
            _names: Default::default(),
        })
    })
}

/// The entry for a modality plugin.
///
/// # Safety
/// `error` is null or valid for a write.
pub unsafe fn modality<M: Modality>(
    host_major: u32,
    _host_minor: u32,
    error: *mut UsText,
) -> *const UsPlugin {
    entry(host_major, error, || {
        let strs = |names: &[&'static str]| -> Vec<UsStr> {
            names.iter().map(|n| UsStr::new(n)).collect()
        };
        let names = [
            strs(M::EXTENSIONS),
            strs(M::CLASSES),
            strs(&M::CONCEPTS.iter().map(|c| c.name).collect::<Vec<_>>()),
            strs(&M::CONCEPTS.iter().map(|c| c.category).collect::<Vec<_>>()),
            strs(M::TRACKS),
        ];
        let [extensions, classes, concepts, categories, tracks] = &names;
        let world = (!classes.is_empty()).then(|| {
            Box::new(UsWorld {
                size: size_of::<UsWorld>() as u32,
                classes: classes.as_ptr(),
                n_classes: classes.len(),
                concepts: concepts.as_ptr(),
                categories: categories.as_ptr(),
                n_concepts: concepts.len(),
                held_out: M::HELD_OUT,
                sample: Some(crate::modality::sample::<M>),
                tracks: tracks.as_ptr(),
                n_tracks: tracks.len(),
            })
        });
        let modality = Box::new(UsModality {
            size: size_of::<UsModality>() as u32,
            extensions: extensions.as_ptr(),
            n_extensions: extensions.len(),
            card: UsStr::new(M::CARD),
            decode: Some(crate::modality::decode::<M>),
            release: Some(crate::modality::release),
            draw: M::DRAWS.then_some(crate::modality::draw::<M> as _),
            world: world
                .as_deref()
                .map_or(std::ptr::null(), |w| w as *const UsWorld),
        });
        let mut plugin = description(KIND_MODALITY, [M::NAME, M::VERSION, M::ABOUT]);
        plugin.modality = &*modality;
        Ok(Exported {
            plugin,
            instance: Box::new(M::default()),
            _method: None,
            _modality: Some(modality),
            _world: world,
            _params: Vec::new(),
            _choices: Vec::new(),
            _names: names,
        })
    })
}

/// The entry's shared body: the handshake, then the description, made once.
fn entry(
    host_major: u32,
    error: *mut UsText,
    make: impl FnOnce() -> Result<Exported, Error>,
) -> *const UsPlugin {
    let mut made = std::ptr::null();
    guarded(error, || {
        if host_major != ABI_MAJOR {
            return Err(Error::new(format!(
                "built for plugin ABI {ABI_MAJOR}.{ABI_MINOR}, not the host's {host_major}.x"
            )));
        }
        let exported = match EXPORTED.get() {
            Some(e) => e,
            None => {
                let e = make()?;
                EXPORTED.get_or_init(|| e)
            }
        };
        made = &exported.plugin as *const UsPlugin;
        Ok(())
    });
    made
}

fn description(kind: u32, [name, version, about]: [&'static str; 3]) -> UsPlugin {
    UsPlugin {
        size: size_of::<UsPlugin>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        kind,
        name: UsStr::new(name),
        version: UsStr::new(version),
        about: UsStr::new(about),
        method: std::ptr::null(),
        modality: std::ptr::null(),
    }
}

/// Parameter declarations the host would refuse, refused here with a clearer word.
fn check_params(params: &[Param]) -> Result<(), Error> {
    for (i, p) in params.iter().enumerate() {
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::new(format!(
                "parameter `{}` needs a name of letters, digits and dashes",
                p.name
            )));
        }
        if params[..i].iter().any(|q| q.name == p.name) {
            return Err(Error::new(format!(
                "parameter `{}` is declared twice",
                p.name
            )));
        }
    }
    Ok(())
}

/// The plugin's one instance of `T`.
pub(crate) fn instance<T: 'static>() -> Result<&'static T, Error> {
    EXPORTED
        .get()
        .and_then(|e| e.instance.downcast_ref::<T>())
        .ok_or_else(|| Error::new("called before the plugin's entry"))
}

/// Runs `f` for the host: [`US_OK`]; [`US_CANCELLED`]; or [`US_ERROR`] with
/// `error` filled from the error or the panic. Never unwinds.
pub(crate) fn guarded(error: *mut UsText, f: impl FnOnce() -> Result<(), Error>) -> i32 {
    quiet_panics();
    let (status, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return US_OK,
        Ok(Err(e)) if e.is_cancelled() => return US_CANCELLED,
        Ok(Err(e)) => (US_ERROR, e.to_string()),
        Err(payload) => (US_ERROR, panic_message(payload)),
    };
    if !error.is_null() {
        // SAFETY: the host's output slot for the text.
        unsafe { error.write(UsText::owned(message)) };
    }
    status
}

/// Sends this library's panic messages to [`PANIC`] instead of standard error,
/// where they would tear through the host's terminal screen.
fn quiet_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info.to_string().replace('\n', " ");
            PANIC.with(|p| *p.borrow_mut() = Some(message));
        }))
    });
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let caught = PANIC.with(|p| p.borrow_mut().take());
    let text = caught
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    format!("the plugin panicked: {text}")
}

/// Exports a plugin: `export_plugin!(method: MyMethod);` or
/// `export_plugin!(modality: MyModality);`, once per library.
#[macro_export]
macro_rules! export_plugin {
    ($kind:ident: $plugin:ty) => {
        /// The unitscope plugin ABI's entry.
        ///
        /// # Safety
        /// `error` is null or valid for a write (the host's contract).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn unitscope_plugin_v1(
            host_major: u32,
            host_minor: u32,
            error: *mut $crate::abi::UsText,
        ) -> *const $crate::abi::UsPlugin {
            unsafe { $crate::export::$kind::<$plugin>(host_major, host_minor, error) }
        }
    };
}
