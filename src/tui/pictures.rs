//! Pictures on screen through ratatui-image: each image is encoded once per pane
//! size for the protocol the terminal speaks (kitty, sixel, iTerm2 or half blocks),
//! and the encoding is kept, so redrawing a frame or scrolling a grid of thumbnails
//! back and forth re-encodes nothing.
//!
//! Half blocks are encoded as the frame is drawn, resampled once from the image to
//! the cells (ratatui-image's own path scales up to the font's pixels, nearest
//! neighbour, then back down: ~3 ms for a 29x35-cell pane here, against ~0.1 ms
//! this way, and blockier). The graphics protocols can take tens of milliseconds for a large image
//! (a 1024x768 sixel ~100 ms here), so they are encoded on a thread of their own:
//! the pane stays empty for the frame or two until [`Pictures::pump`] takes the
//! result in, and the UI thread never waits on an encoder.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, Sender, channel};

use image::{DynamicImage, RgbImage};
use ratatui::Frame;
use ratatui::layout::{Rect, Size};
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::protocol::halfblocks::Halfblocks;
use ratatui_image::{Image, Resize};

/// An image handed to [`Pictures`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PictureId(u64);

/// Encoded pictures kept at most; past it all go (a resize makes every pane's
/// encoding stale anyway).
const MAX_ENCODED: usize = 1024;

/// A picture at a pane size.
type Key = (PictureId, u16, u16);

/// The line to the encoder thread: pictures to encode, and what came of them.
struct Encoder {
    requests: Sender<(Key, DynamicImage, Size)>,
    answers: Receiver<(Key, Option<Protocol>)>,
}

/// The images the views draw, and their encodings per size.
pub struct Pictures {
    picker: Picker,
    next: u64,
    images: HashMap<PictureId, RgbImage>,
    encoded: HashMap<Key, Protocol>,
    /// Encodings asked of the encoder thread, not yet back.
    pending: HashSet<Key>,
    /// The encoder thread's queue and answers; none for half blocks.
    encoder: Option<Encoder>,
}

impl Pictures {
    /// Pictures drawn as `picker` says.
    pub fn new(picker: Picker) -> Self {
        let encoder = (picker.protocol_type() != ProtocolType::Halfblocks).then(|| {
            let (requests, queue) = channel::<(Key, DynamicImage, Size)>();
            let (answer, answers) = channel();
            let encoder = picker.clone();
            std::thread::spawn(move || {
                for (key, image, size) in queue {
                    let protocol = encoder.new_protocol(image, size, Resize::Scale(None)).ok();
                    if answer.send((key, protocol)).is_err() {
                        return;
                    }
                }
            });
            Encoder { requests, answers }
        });
        Self {
            picker,
            next: 0,
            images: HashMap::new(),
            encoded: HashMap::new(),
            pending: HashSet::new(),
            encoder,
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

    /// Takes in the encoder's finished pictures; whether there were any.
    pub fn pump(&mut self) -> bool {
        let Some(Encoder { answers, .. }) = &self.encoder else {
            return false;
        };
        let mut any = false;
        while let Ok((key, protocol)) = answers.try_recv() {
            self.pending.remove(&key);
            // A picture that cannot be encoded stays blank rather than asked again.
            if let Some(protocol) = protocol
                && self.images.contains_key(&key.0)
            {
                self.encoded.insert(key, protocol);
            }
            any = true;
        }
        any
    }

    /// Whether encodings are still being made.
    pub fn encoding(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Draws `id` as large as fits in `area`, aspect kept, centred; blank until its
    /// encoding for this size exists.
    pub fn draw(&mut self, frame: &mut Frame, area: Rect, id: PictureId) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let key = (id, area.width, area.height);
        if !self.encoded.contains_key(&key) {
            self.encode(key);
        }
        let Some(protocol) = self.encoded.get(&key) else {
            return;
        };
        let used = protocol.size();
        let placed = Rect {
            x: area.x + (area.width.saturating_sub(used.width)) / 2,
            y: area.y + (area.height.saturating_sub(used.height)) / 2,
            width: used.width.min(area.width),
            height: used.height.min(area.height),
        };
        frame.render_widget(Image::new(protocol), placed);
    }

    /// Encodes `key` now (half blocks) or asks the encoder thread for it.
    fn encode(&mut self, key: Key) {
        if self.pending.contains(&key) {
            return;
        }
        let Some(image) = self.images.get(&key.0) else {
            return;
        };
        if self.encoded.len() >= MAX_ENCODED {
            self.encoded.clear();
        }
        let image_size = image.dimensions();
        let image = DynamicImage::ImageRgb8(image.clone());
        let size = Size::new(key.1, key.2);
        match &self.encoder {
            Some(Encoder { requests, .. }) => {
                if requests.send((key, image, size)).is_ok() {
                    self.pending.insert(key);
                }
            }
            None => {
                if let Ok(halfblocks) = Halfblocks::new(image, cells_for(size, image_size)) {
                    self.encoded.insert(key, Protocol::Halfblocks(halfblocks));
                }
            }
        }
    }
}

/// The cells an image of `(width, height)` pixels fills in `area` as half blocks
/// (a cell is one pixel wide, two tall), aspect kept, as large as fits.
fn cells_for(area: Size, (width, height): (u32, u32)) -> Size {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    let scale = (area.width as f64 / w).min(area.height as f64 * 2.0 / h);
    let columns = (w * scale).round().clamp(1.0, area.width as f64);
    let rows = (h * scale / 2.0).round().clamp(1.0, area.height as f64);
    Size::new(columns as u16, rows as u16)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    /// Half blocks fill the pane as far as the picture's aspect allows, with
    /// square pixels: a cell is one pixel wide and two tall.
    #[test]
    fn half_blocks_keep_the_aspect() {
        let cells = |area: (u16, u16), image| {
            let size = cells_for(Size::new(area.0, area.1), image);
            (size.width, size.height)
        };
        assert_eq!(cells((29, 35), (64, 64)), (29, 15));
        assert_eq!(cells((13, 5), (224, 224)), (10, 5));
        assert_eq!(cells((20, 20), (200, 50)), (20, 3));
        assert_eq!(cells((20, 20), (10, 400)), (1, 20));
        assert_eq!(cells((1, 1), (0, 0)), (1, 1));
    }

    /// A graphics protocol is encoded off the drawing thread: the first frame asks,
    /// a later one shows it; the size is cached, a new size is encoded again.
    #[test]
    fn graphics_are_encoded_on_the_encoder_thread() {
        let mut picker = Picker::halfblocks();
        picker.set_protocol_type(ProtocolType::Kitty);
        let mut pictures = Pictures::new(picker);
        let id = pictures.add(RgbImage::from_pixel(64, 64, image::Rgb([200, 30, 30])));
        let mut terminal = Terminal::new(TestBackend::new(40, 20)).unwrap();
        let area = Rect::new(0, 0, 20, 10);
        terminal.draw(|f| pictures.draw(f, area, id)).unwrap();
        assert!(pictures.encoding(), "nothing was asked of the encoder");
        assert!(!pictures.encoded.contains_key(&(id, 20, 10)));
        let deadline = Instant::now() + Duration::from_secs(30);
        while pictures.encoding() {
            assert!(Instant::now() < deadline, "the encoder never answered");
            pictures.pump();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(pictures.encoded.contains_key(&(id, 20, 10)));
        terminal.draw(|f| pictures.draw(f, area, id)).unwrap();
        assert!(!pictures.encoding(), "a cached size was encoded again");
        terminal
            .draw(|f| pictures.draw(f, Rect::new(0, 0, 30, 15), id))
            .unwrap();
        assert!(pictures.encoding(), "a new size was not encoded");
    }
}
