//! Opening a plugin file: the dynamic library, its one entry symbol, the ABI
//! handshake and the checks on what the entry returns. A library, once opened,
//! stays loaded for the life of the process: the host keeps pointers into it.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use unitscope_sdk::abi::{
    ABI_MAJOR, ABI_MINOR, ENTRY, KIND_METHOD, KIND_MODALITY, UsEntry, UsMethod, UsModality,
    UsPlugin, UsStr, UsText,
};

/// What a plugin's entry declared, checked.
pub struct Opened {
    /// Its name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// One line on what it does.
    pub about: String,
    /// The ABI version it was built for.
    pub abi: (u32, u32),
    /// What it is.
    pub kind: Kind,
}

/// A plugin's entries by kind; static, since the library is never unloaded.
pub enum Kind {
    /// An attribution method.
    Method(&'static UsMethod),
    /// A modality.
    Modality(&'static UsModality),
}

/// Opens the plugin at `path`.
pub fn open(path: &Path) -> Result<Opened> {
    // RTLD_NOW: a library with an unresolved symbol fails here, not at its first call.
    let library = unsafe {
        libloading::os::unix::Library::open(
            Some(path),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
        )
    }
    .map_err(|e| anyhow::anyhow!("{}", one_line(&e.to_string())))
    .context("not a loadable library for this machine")?;
    // Kept for the life of the process: what the entry returns points into it.
    let library: &'static _ = Box::leak(Box::new(library));
    let entry = unsafe { library.get::<UsEntry>(ENTRY) }.map_err(|_| {
        anyhow::anyhow!(
            "no entry symbol `unitscope_plugin_v1`: not a unitscope plugin, or one built \
             for another major version of the plugin ABI (this unitscope speaks {ABI_MAJOR}.{ABI_MINOR})"
        )
    })?;
    let mut error = UsText::NONE;
    // SAFETY: the entry's declared type (the ABI's contract); it never unwinds (the
    // SDK's export guards it; a C plugin cannot).
    let plugin = unsafe { entry(ABI_MAJOR, ABI_MINOR, &mut error) };
    let message = unsafe { error.take() };
    if plugin.is_null() {
        bail!(
            "its entry refused to start: {}",
            message.unwrap_or_else(|| "it gave no reason".to_owned())
        );
    }
    // SAFETY: non-null, static in the never-unloaded library, at least its `size`.
    let plugin: &'static UsPlugin = unsafe { read_sized(plugin, V1_0.plugin, "description") }?;
    let abi = (plugin.abi_major, plugin.abi_minor);
    ensure!(
        abi.0 == ABI_MAJOR,
        "built for plugin ABI {}.{}; this unitscope speaks {ABI_MAJOR}.{ABI_MINOR} (rebuild the plugin \
         against unitscope-sdk {ABI_MAJOR}.x)",
        abi.0,
        abi.1
    );
    ensure!(
        runs_here(abi.1),
        "built for plugin ABI {}.{}, newer than this unitscope's {ABI_MAJOR}.{ABI_MINOR}: update unitscope",
        abi.0,
        abi.1
    );
    let name = text(plugin.name, "name")?;
    ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "its name `{name}` is not lower-case letters, digits and dashes"
    );
    let kind = match plugin.kind {
        KIND_METHOD => {
            ensure!(
                !plugin.method.is_null(),
                "it says it is a method but has no method entries"
            );
            // SAFETY: non-null, static in the never-unloaded library.
            let method: &UsMethod =
                unsafe { read_sized(plugin.method, V1_0.method, "method entries") }?;
            ensure!(
                method.attribute.is_some(),
                "its method has no `attribute` entry"
            );
            Kind::Method(method)
        }
        KIND_MODALITY => {
            ensure!(
                !plugin.modality.is_null(),
                "it says it is a modality but has no modality entries"
            );
            // SAFETY: as for the method.
            let modality: &UsModality =
                unsafe { read_sized(plugin.modality, V1_0.modality, "modality entries") }?;
            ensure!(
                modality.decode.is_some() && modality.release.is_some(),
                "its modality lacks a `decode` or `release` entry"
            );
            Kind::Modality(modality)
        }
        other => bail!("it is of an unknown kind ({other})"),
    };
    Ok(Opened {
        name,
        version: text(plugin.version, "version")?,
        about: text(plugin.about, "description")?,
        abi,
        kind,
    })
}

/// Whether a plugin built for minor version `minor` runs on this host: one built
/// for an older minor or this one.
fn runs_here(minor: u32) -> bool {
    minor <= ABI_MINOR
}

/// The sizes of ABI 1.0's structs: the least a plugin of any 1.x may hand over.
/// (1.1 appended `world` to the modality's entries.)
struct Sizes {
    plugin: usize,
    method: usize,
    modality: usize,
}

const V1_0: Sizes = Sizes {
    plugin: std::mem::offset_of!(UsPlugin, modality) + size_of::<*const UsModality>(),
    method: std::mem::offset_of!(UsMethod, passes) + size_of::<usize>(),
    modality: std::mem::offset_of!(UsModality, draw) + size_of::<usize>(),
};

/// A copy of the plugin's struct at `ptr`, in the host's layout: the bytes its
/// `size` (its first field) says it has, up to the host's size, the rest zero
/// (absent). Leaked: the host keeps it for the life of the process.
///
/// # Safety
/// `ptr` is non-null and readable for the size its first field states; `T` is an
/// ABI struct beginning with `size: u32` whose all-zero value is valid (pointers,
/// nullable entries, numbers).
pub(super) unsafe fn read_sized<T>(ptr: *const T, least: usize, what: &str) -> Result<&'static T> {
    let size = unsafe { ptr.cast::<u32>().read() } as usize;
    ensure!(
        size >= least,
        "its {what} are {size} bytes, fewer than the {least} of the oldest plugin ABI that has them"
    );
    let mut copy = Box::new(std::mem::MaybeUninit::<T>::zeroed());
    unsafe {
        std::ptr::copy_nonoverlapping(
            ptr.cast::<u8>(),
            copy.as_mut_ptr().cast::<u8>(),
            size.min(size_of::<T>()),
        );
    }
    // SAFETY: zeroed, then filled with the plugin's bytes of the same layout.
    Ok(Box::leak(unsafe { copy.assume_init() }))
}

/// Text from the plugin's static description.
pub(super) fn text(s: UsStr, what: &str) -> Result<String> {
    // SAFETY: static text in the never-unloaded library (the ABI's contract).
    let s = unsafe { s.to_str() }.map_err(|e| anyhow::anyhow!("its {what} is {e}"))?;
    Ok(s.to_owned())
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// `n` items at `ptr` (none when `n` is 0).
///
/// # Safety
/// `ptr` points to `n` valid items in the never-unloaded library.
pub(super) unsafe fn slice<'a, T>(ptr: *const T, n: usize) -> &'a [T] {
    match n == 0 || ptr.is_null() {
        true => &[],
        false => unsafe { std::slice::from_raw_parts(ptr, n) },
    }
}
