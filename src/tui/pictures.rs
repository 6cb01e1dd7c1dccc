//! Pictures on screen through ratatui-image: each image is encoded once per pane
//! size for the protocol the terminal speaks (kitty, sixel, iTerm2 or half blocks),
//! and the encoding is kept, so redrawing a frame or scrolling a grid of thumbnails
//! back and forth re-encodes nothing.

use std::collections::HashMap;

use image::{DynamicImage, RgbImage};
use ratatui::Frame;
use ratatui::layout::{Rect, Size};
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};

/// An image handed to [`Pictures`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PictureId(u64);

/// Encoded pictures kept at most; past it the oldest size of every picture goes
/// (a resize makes every pane's encoding stale anyway).
const MAX_ENCODED: usize = 1024;

/// The images the views draw, and their encodings per size.
pub struct Pictures {
    picker: Picker,
    next: u64,
    images: HashMap<PictureId, RgbImage>,
    encoded: HashMap<(PictureId, u16, u16), Protocol>,
}

impl Pictures {
    /// Pictures drawn as `picker` says.
    pub fn new(picker: Picker) -> Self {
        Self {
            picker,
            next: 0,
            images: HashMap::new(),
            encoded: HashMap::new(),
        }
    }

    /// The protocol in use, as its option value names it.
    pub fn protocol(&self) -> &'static str {
        match self.picker.protocol_type() {
            ProtocolType::Halfblocks => "halfblocks",
            ProtocolType::Sixel => "sixel",
            ProtocolType::Kitty => "kitty",
            ProtocolType::Iterm2 => "iterm2",
        }
    }

    /// Keeps `image` for drawing.
    pub fn add(&mut self, image: RgbImage) -> PictureId {
        let id = PictureId(self.next);
        self.next += 1;
        self.images.insert(id, image);
        id
    }

    /// Forgets `id` and its encodings.
    pub fn remove(&mut self, id: PictureId) {
        self.images.remove(&id);
        self.encoded.retain(|(p, _, _), _| *p != id);
    }

    /// Draws `id` as large as fits in `area`, aspect kept, centred. An image that
    /// cannot be encoded leaves the area blank (the status line says nothing: the
    /// next frame tries again at the new size).
    pub fn draw(&mut self, frame: &mut Frame, area: Rect, id: PictureId) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let key = (id, area.width, area.height);
        if !self.encoded.contains_key(&key) {
            let Some(image) = self.images.get(&id) else {
                return;
            };
            if self.encoded.len() >= MAX_ENCODED {
                self.encoded.clear();
            }
            let image = DynamicImage::ImageRgb8(image.clone());
            let size = Size::new(area.width, area.height);
            match self.picker.new_protocol(image, size, Resize::Scale(None)) {
                Ok(protocol) => {
                    self.encoded.insert(key, protocol);
                }
                Err(_) => return,
            }
        }
        let protocol = &self.encoded[&key];
        let used = protocol.size();
        let placed = Rect {
            x: area.x + (area.width.saturating_sub(used.width)) / 2,
            y: area.y + (area.height.saturating_sub(used.height)) / 2,
            width: used.width.min(area.width),
            height: used.height.min(area.height),
        };
        frame.render_widget(Image::new(protocol), placed);
    }
}
