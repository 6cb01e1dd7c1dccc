//! Network Dissection: the Broden layout read pixel by pixel from a directory the
//! test writes, the streaming dissection against a brute-force one (every
//! activation in memory, sorted; every mask drawn), and planted colour detectors
//! labelled with their colour.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::{Rgb, RgbImage};
use unitscope::data::{Broden, ConceptSet, InputSpec, ResizeMode, Source, Vocabulary};
use unitscope::dissect::{self, STATED_ERROR, Settings};
use unitscope::model::{ArchOptions, Architecture, Model, Probe, Weights};

/// Label numbers: two colours, an object numbered past 255 (its PNG code needs
/// the green channel), a scene.
const RED: u32 = 1;
const BLUE: u32 = 2;
const DOG: u32 = 300;
const BEACH: u32 = 4;

/// A label PNG of `w x h` whose pixel `(x, y)` carries `label(x, y)` as red + 256 green.
fn label_png(path: &Path, (w, h): (u32, u32), label: impl Fn(u32, u32) -> u32) {
    RgbImage::from_fn(w, h, |x, y| {
        let n = label(x, y);
        Rgb([(n % 256) as u8, (n / 256) as u8, 0])
    })
    .save(path)
    .unwrap();
}

/// A small Broden directory: two images of different sizes whose label sizes
/// differ per row (one not square), a category with two label files for one
/// image, an image-level scene label, and a label listed in two categories.
fn write_broden(dir: &Path) {
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    std::fs::write(
        dir.join("category.csv"),
        "name,first,last,count,frequency\ncolor,1,2,2,2\nobject,300,300,1,1\nscene,4,4,1,1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("label.csv"),
        "number,name,category,frequency,coverage,syns\n\
         1,red,color(2),2,0.3,\n2,blue,color(1),1,0.1,\n\
         300,dog,object(1);color(1),1,0.2,hound\n4,beach,scene(1),1,1.0,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("c_color.csv"),
        "code,number,name,frequency,coverage\n1,1,red,2,0.3\n2,2,blue,1,0.1\n3,300,dog,1,0.05\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("c_object.csv"),
        "code,number,name,frequency,coverage\n1,300,dog,1,0.2\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("c_scene.csv"),
        "code,number,name,frequency,coverage\n1,4,beach,1,1.0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("index.csv"),
        "image,split,ih,iw,sh,sw,color,object,scene\n\
         sub/a.png,train,8,8,4,4,sub/a_color.png,sub/a_dog1.png;sub/a_dog2.png,4\n\
         b.png,val,6,6,3,2,b_color.png,,\n",
    )
    .unwrap();
    RgbImage::from_pixel(8, 8, Rgb([200, 30, 30]))
        .save(images.join("sub/a.png"))
        .unwrap();
    RgbImage::from_pixel(6, 6, Rgb([30, 30, 200]))
        .save(images.join("b.png"))
        .unwrap();
    label_png(&images.join("sub/a_color.png"), (4, 4), |x, _| {
        if x < 2 { RED } else { 0 }
    });
    label_png(&images.join("sub/a_dog1.png"), (4, 4), |_, y| {
        if y == 0 { DOG } else { 0 }
    });
    label_png(&images.join("sub/a_dog2.png"), (4, 4), |x, y| {
        if x == y { DOG } else { 0 }
    });
    label_png(&images.join("b_color.png"), (2, 3), |x, y| {
        if (x + y) % 2 == 0 { BLUE } else { RED }
    });
}

/// A Broden dataset is known by its listings: a copy elsewhere is the same
/// dataset (shards on machines that mount it at other paths merge), a changed
/// listing another.
#[test]
fn a_broden_copy_has_the_same_identity() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_broden(one.path());
    write_broden(two.path());
    let identity = |dir: &Path| Broden::open(dir).unwrap().identity();
    assert_eq!(identity(one.path()), identity(two.path()));
    let label = two.path().join("label.csv");
    let text = std::fs::read_to_string(&label).unwrap();
    std::fs::write(&label, text.replace("dog", "hound")).unwrap();
    assert_ne!(identity(one.path()), identity(two.path()));
}

#[test]
fn a_broden_directory_is_read_label_by_label() {
    let dir = tempfile::tempdir().unwrap();
    write_broden(dir.path());
    let broden = Broden::open(dir.path()).unwrap();
    assert_eq!(broden.len(), 2);
    let vocabulary = broden.vocabulary();
    assert_eq!(vocabulary.categories, ["color", "object", "scene"]);
    let category = |n: u32| vocabulary.labels[n as usize].category;
    // Dog's coverage is larger in `object` than in `color`: object is primary.
    assert_eq!(
        [
            category(0),
            category(RED),
            category(BLUE),
            category(DOG),
            category(BEACH)
        ],
        [None, Some(0), Some(0), Some(1), Some(2)]
    );
    assert_eq!(vocabulary.labels[DOG as usize].name, "dog");
    assert_eq!(vocabulary.labels[3].category, None, "an unlisted number");

    // Pixel by pixel: the colour file, then the object's two files, then the
    // image-level scene, in the order index.csv lists them.
    let a = broden.labels(0).unwrap();
    assert_eq!(a.size(), (4, 4));
    for p in 0..16 {
        let expected: Vec<u32> = [
            (p % 4 < 2).then_some(RED),
            (p / 4 == 0).then_some(DOG),
            (p % 4 == p / 4).then_some(DOG),
            Some(BEACH),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(a.at(p), expected, "pixel {p}");
    }
    for (r, region) in a.regions().iter().enumerate() {
        let pixels = a.region_of().iter().filter(|&&of| of as usize == r).count();
        assert_eq!(region.pixels, pixels as u64);
    }
    let b = broden.labels(1).unwrap();
    assert_eq!(b.size(), (3, 2));
    let b: Vec<&[u32]> = (0..6).map(|p| b.at(p)).collect();
    assert_eq!(b, [[BLUE], [RED], [RED], [BLUE], [BLUE], [RED]]);
    assert!(broden.image_path(0).ends_with("images/sub/a.png"));

    // A label file whose size is not the row's is an error naming it.
    label_png(&dir.path().join("images/b_color.png"), (3, 3), |_, _| RED);
    let err = broden.labels(1).unwrap_err().to_string();
    assert!(err.contains("b_color.png") && err.contains("2x3"), "{err}");
    // A label number past the listing's, and a listing with no image, are errors.
    label_png(&dir.path().join("images/b_color.png"), (2, 3), |_, _| 400);
    let err = broden.labels(1).unwrap_err().to_string();
    assert!(
        err.contains("label 400") && err.contains("label.csv"),
        "{err}"
    );
    let index = std::fs::read_to_string(dir.path().join("index.csv")).unwrap();
    let header = index.lines().next().unwrap().to_string() + "\n";
    std::fs::write(dir.path().join("index.csv"), &header).unwrap();
    let err = format!("{:#}", Broden::open(dir.path()).unwrap_err());
    assert!(err.contains("lists no image"), "{err}");
    std::fs::write(dir.path().join("index.csv"), index).unwrap();
    // A missing listing says what a Broden dataset holds.
    std::fs::remove_file(dir.path().join("c_scene.csv")).unwrap();
    let err = format!("{:#}", Broden::open(dir.path()).unwrap_err());
    assert!(
        err.contains("c_scene.csv") && err.contains("index.csv"),
        "{err}"
    );
}

/// Bilinear upsampling with half-pixel centres, written out for the reference.
fn upsample(map: &[f32], (h, w): (usize, usize), (sh, sw): (usize, usize)) -> Vec<f32> {
    let coordinate = |i: usize, n: usize, out: usize| {
        ((i as f64 + 0.5) * n as f64 / out as f64 - 0.5).clamp(0.0, (n - 1) as f64)
    };
    let mut out = Vec::with_capacity(sh * sw);
    for y in 0..sh {
        let fy = coordinate(y, h, sh);
        let (y0, ty) = (fy.floor() as usize, (fy - fy.floor()) as f32);
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..sw {
            let fx = coordinate(x, w, sw);
            let (x0, tx) = (fx.floor() as usize, (fx - fx.floor()) as f32);
            let x1 = (x0 + 1).min(w - 1);
            let at = |y: usize, x: usize| map[y * w + x];
            let upper = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * tx;
            let lower = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * tx;
            out.push(upper + (lower - upper) * ty);
        }
    }
    out
}

/// Every unit's IoU with every label, from everything in memory.
fn brute_force(
    model: &Model,
    set: &ConceptSet,
    layer: &str,
    vocabulary: &Vocabulary,
) -> (Vec<f32>, Vec<Vec<f64>>) {
    let mut spec = model.input_spec().clone();
    spec.resize = ResizeMode::Stretch;
    // The images through the readers every command uses, not the set's own loading.
    let source = match set {
        ConceptSet::Broden(b) => Source::Files((0..b.len()).map(|i| b.image_path(i)).collect()),
        ConceptSet::Demo(n) => Source::Demo(*n),
        ConceptSet::World(_) => panic!("the reference reads images"),
    };
    let inputs: Vec<Tensor> = source
        .entries()
        .unwrap()
        .iter()
        .map(|e| e.load(&spec, &Device::Cpu).unwrap().tensor)
        .collect();
    let capture = model
        .forward(
            &Tensor::stack(&inputs, 0).unwrap(),
            &Probe::new().record(layer),
        )
        .unwrap();
    let acts = capture
        .activation(layer)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let (n, units, h, w) = acts.dims4().unwrap();
    let acts = acts.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let map = |i: usize, k: usize| &acts[(i * units + k) * h * w..][..h * w];
    let thresholds: Vec<f32> = (0..units)
        .map(|k| {
            let mut v: Vec<f32> = (0..n).flat_map(|i| map(i, k).to_vec()).collect();
            v.sort_by(f32::total_cmp);
            let p = (v.len() - 1) as f64 * 0.995;
            let (lo, hi) = (v[p.floor() as usize] as f64, v[p.ceil() as usize] as f64);
            (lo + (hi - lo) * p.fract()) as f32
        })
        .collect();
    let labels = vocabulary.labels.len();
    let categories = vocabulary.categories.len();
    let (mut label_area, mut both) = (vec![0f64; labels], vec![vec![0f64; labels]; units]);
    let mut unit_category = vec![vec![0f64; categories]; units];
    for i in 0..n {
        let l = set.labels(i).unwrap();
        let (rows, columns) = l.size();
        let pixels = 0..rows * columns;
        for c in pixels.clone().flat_map(|p| l.at(p)) {
            label_area[*c as usize] += 1.0;
        }
        for k in 0..units {
            let mask: Vec<bool> = upsample(map(i, k), (h, w), l.size())
                .iter()
                .map(|&s| s > thresholds[k])
                .collect();
            let area = mask.iter().filter(|&&m| m).count() as f64;
            let mut met = vec![false; categories];
            for p in pixels.clone().filter(|&p| mask[p]) {
                for &c in l.at(p) {
                    both[k][c as usize] += 1.0;
                    met[vocabulary.labels[c as usize].category.unwrap()] = true;
                }
            }
            for (total, met) in unit_category[k].iter_mut().zip(met) {
                if met {
                    *total += area;
                }
            }
        }
    }
    let iou = (0..units)
        .map(|k| {
            (0..labels)
                .map(|c| match vocabulary.labels[c].category {
                    Some(cat) => {
                        both[k][c] / (unit_category[k][cat] + label_area[c] - both[k][c] + 1e-10)
                    }
                    None => 0.0,
                })
                .collect()
        })
        .collect();
    (thresholds, iou)
}

/// The streaming dissection (batches, exact thresholds) gives the brute force's
/// thresholds and IoUs, and each unit the brute force's best label; from the
/// sketch alone, thresholds within its stated error.
#[test]
fn streaming_dissection_equals_a_brute_force_reference() {
    let model = unitscope::model::demo::model(&Device::Cpu).unwrap();
    let set = ConceptSet::Demo(24);
    let vocabulary = set.vocabulary();
    let layer = "features.4".to_string();
    let settings = Settings {
        batch: 5,
        ..Settings::default()
    };
    let dissected = dissect::dissect(
        &model,
        &set,
        std::slice::from_ref(&layer),
        &settings,
        &mut |_, _| {},
    )
    .unwrap()
    .remove(0);
    let (thresholds, iou) = brute_force(&model, &set, &layer, &vocabulary);
    assert!(dissected.exact);
    assert_eq!(dissected.thresholds, thresholds);
    let mut detectors = 0;
    for (k, unit) in dissected.units.iter().enumerate() {
        let (best, best_iou) = (0..vocabulary.labels.len())
            .map(|c| (c, iou[k][c]))
            .fold((0, -1.0), |a, b| if b.1 > a.1 { b } else { a });
        assert_eq!(unit.best.label, vocabulary.labels[best].name, "unit {k}");
        assert!((unit.best.iou - best_iou).abs() < 1e-12, "unit {k}");
        for (c, reference) in iou[k].iter().enumerate() {
            assert!((dissected.tally.iou(k, c, &vocabulary) - reference).abs() < 1e-12);
        }
        detectors += unit.detector as usize;
    }
    assert!(
        detectors > 0,
        "features.4 of the demo model has colour detectors"
    );

    let sketched = Settings {
        exact_budget: 0,
        ..settings
    };
    let from_sketch = dissect::dissect(&model, &set, &[layer], &sketched, &mut |_, _| {})
        .unwrap()
        .remove(0);
    assert!(!from_sketch.exact);
    for (s, e) in from_sketch.thresholds.iter().zip(&thresholds) {
        let error = (s - e).abs() as f64 / e.abs().max(f32::MIN_POSITIVE) as f64;
        assert!(error <= STATED_ERROR, "{s} vs {e}");
    }
}

/// A plain CNN at 64 px whose two 3x3 units are planted colour detectors (the
/// centre tap only): R − G − B, and B − R − G.
fn planted() -> Model {
    let device = Device::Cpu;
    let mut kernel = vec![0f32; 2 * 3 * 9];
    for (unit, weights) in [[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]].iter().enumerate() {
        for (c, w) in weights.iter().enumerate() {
            kernel[unit * 27 + c * 9 + 4] = *w;
        }
    }
    let tensors = [
        (
            "features.0.weight",
            Tensor::from_vec(kernel, (2, 3, 3, 3), &device),
        ),
        ("features.0.bias", Tensor::zeros(2, DType::F32, &device)),
        ("fc.weight", Tensor::ones((2, 2), DType::F32, &device)),
        ("fc.bias", Tensor::zeros(2, DType::F32, &device)),
    ]
    .map(|(name, t)| (name.to_string(), t.unwrap()));
    let options = ArchOptions {
        channels: Some(vec![2]),
        batch_norm: Some(false),
        ..ArchOptions::default()
    };
    let input = InputSpec {
        size: [64, 64],
        resize: ResizeMode::Stretch,
        mean: [0.0; 3],
        std: [1.0; 3],
        ..InputSpec::default()
    };
    let weights = Weights::from_tensors(tensors, &device).unwrap();
    Model::new(
        "planted".into(),
        Architecture::PlainCnn,
        &options,
        &weights,
        input,
        vec!["a".into(), "b".into()],
    )
    .unwrap()
}

/// In the demo world, the planted redness and blueness units are labelled red and
/// blue, as detectors well above the 0.04 IoU. The world's objects are flat
/// colours, so a planted unit's strongest response is one value on more than 0.5%
/// of all pixels: the top-0.005 threshold is that value and the mask `S > T` would
/// be empty (as in NetDissect-Lite). The top 5% puts the threshold below it.
#[test]
fn planted_colour_detectors_get_their_colour() {
    let model = planted();
    let set = ConceptSet::Demo(300);
    let settings = Settings {
        quantile: 0.05,
        ..Settings::default()
    };
    let dissected = dissect::dissect(
        &model,
        &set,
        &["features.1".to_string()],
        &settings,
        &mut |_, _| {},
    )
    .unwrap()
    .remove(0);
    for (unit, colour) in dissected.units.iter().zip(["red", "blue"]) {
        assert_eq!(
            (unit.best.category.as_str(), unit.best.label.as_str()),
            ("color", colour),
            "unit {}: {:?}",
            unit.unit,
            unit.best
        );
        assert!(
            unit.detector && unit.best.iou > 0.1,
            "{colour}: IoU {}",
            unit.best.iou
        );
    }
}

/// A Broden directory dissects end to end: image-level labels count the whole
/// image, and every unit gets a label from the vocabulary.
#[test]
fn a_broden_directory_dissects_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    write_broden(dir.path());
    let set = ConceptSet::Broden(Broden::open(dir.path()).unwrap());
    let dissected = dissect::dissect(
        &planted(),
        &set,
        &["features.1".to_string()],
        &Settings::default(),
        &mut |_, _| {},
    )
    .unwrap()
    .remove(0);
    // The beach label covers image a's 16 label pixels; red 8 + 3, blue 3, dog 4 + 4.
    let truth = |label: &str| {
        dissected.units[0]
            .categories
            .iter()
            .find(|m| m.label == label)
            .map(|m| m.truth)
    };
    assert_eq!(truth("beach"), Some(16));
    assert_eq!(truth("dog"), Some(8));
    let names: Vec<String> = set
        .vocabulary()
        .labels
        .iter()
        .map(|l| l.name.clone())
        .collect();
    for unit in &dissected.units {
        assert!(names.contains(&unit.best.label));
    }
}

/// Two rounds over three uneven shards, merged, equal one run from the sketch: the
/// same thresholds and the same tally, count for count. A missing shard, a doubled
/// one, and parts of another run are refused by name.
#[test]
fn merged_shards_equal_a_single_run() {
    use unitscope::dissect::shard::{self, Part, Run, State};
    let model = unitscope::model::demo::model(&Device::Cpu).unwrap();
    let set = ConceptSet::Demo(31);
    let layer = "features.7".to_string();
    let layers = std::slice::from_ref(&layer);
    let settings = Settings {
        batch: 4,
        exact_budget: 0,
        ..Settings::default()
    };
    let single = dissect::dissect(&model, &set, layers, &settings, &mut |_, _| {})
        .unwrap()
        .remove(0);
    assert!(!single.exact);

    let run = Run {
        model: "demo".into(),
        data: set.identity(),
        images: set.len(),
        quantile: settings.quantile,
        iou_threshold: settings.iou_threshold,
        rotate: None,
        vocabulary: set.vocabulary(),
    };
    let shards: Vec<_> = (0..3)
        .map(|i| (i, shard::shard_range((i, 3), set.len()).unwrap()))
        .collect();
    assert_eq!(shards[2].1, 20..31);
    let sketched: Vec<Part> = shards
        .iter()
        .map(|(i, range)| {
            let sketches = dissect::sketch_pass(
                &model,
                &set,
                range.clone(),
                layers,
                &settings,
                &mut |_, _| {},
            )
            .unwrap()
            .remove(0);
            let state = State::Sketches(sketches);
            Part::new(("k", &run), &layer, (*i, 3), range.clone(), state)
        })
        .collect();
    let State::Sketches(sketches) = shard::merge(&sketched).unwrap() else {
        panic!("round 1 merges into sketches")
    };
    let thresholds = dissect::sketch_thresholds(&sketches, settings.quantile);
    assert_eq!(thresholds, single.thresholds);
    let tallied: Vec<Part> = shards
        .iter()
        .map(|(i, range)| {
            let t = std::slice::from_ref(&thresholds);
            let tally = dissect::tally_pass(
                &model,
                &set,
                range.clone(),
                layers,
                t,
                &settings,
                &mut |_, _| {},
            )
            .unwrap()
            .remove(0);
            let state = State::Tally(thresholds.clone(), tally);
            Part::new(("k", &run), &layer, (*i, 3), range.clone(), state)
        })
        .collect();
    let State::Tally(_, tally) = shard::merge(&tallied).unwrap() else {
        panic!("round 2 merges into a tally")
    };
    assert_eq!(tally, single.tally);

    let error = |parts: &[Part]| match shard::merge(parts) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("merged"),
    };
    assert!(error(&tallied[..2]).contains("lacks shard(s) 2 of 3"));
    let doubled = [tallied.clone(), vec![tallied[0].clone()]].concat();
    assert!(error(&doubled).contains("given twice"));
    let mut other = tallied.clone();
    other[1].key = "another run".into();
    assert!(error(&other).contains("different runs"));
    let mixed = [vec![sketched[0].clone()], tallied[1..].to_vec()].concat();
    assert!(error(&mixed).contains("both rounds"));
}

/// Interpretability is not discriminative power (Bau et al. 2017, 3.2): rotating
/// `features.7`'s units by a random orthogonal matrix (and back before the next
/// layer) keeps the logits to 1e-4 and leaves fewer detectors. On the demo model
/// at IoU 0.02: 3 detectors, none for rotation seeds 1 to 4 (`features.4`, whose
/// units detect colours, a direction any rotation keeps, does not drop).
#[test]
fn a_rotated_layer_predicts_the_same_with_fewer_detectors() {
    let model = unitscope::model::demo::model(&Device::Cpu).unwrap();
    let set = ConceptSet::Demo(1000);
    let layer = "features.7".to_string();
    let rotation = dissect::rotation::random_rotation(64, 1, &Device::Cpu).unwrap();
    let images: Vec<usize> = (0..32).collect();
    let (x, _) = set
        .load(&images, model.input_spec(), &Device::Cpu, false)
        .unwrap();
    let probe = Probe::new()
        .layers_only()
        .record(layer.as_str())
        .rotate(layer.as_str(), rotation);
    let rotated = model.forward(&x, &probe).unwrap();
    let plain = model.logits(&x).unwrap();
    let err = rel_err(rotated.logits().unwrap(), &plain);
    assert!(err < 1e-4, "the rotation changed the logits by {err:e}");

    let detectors = |rotate| {
        let settings = Settings {
            iou_threshold: 0.02,
            rotate,
            ..Settings::default()
        };
        let d = dissect::dissect(
            &model,
            &set,
            std::slice::from_ref(&layer),
            &settings,
            &mut |_, _| {},
        )
        .unwrap()
        .remove(0);
        d.summary().0
    };
    let (before, after) = (detectors(None), detectors(Some(1)));
    assert!(
        after < before,
        "{before} detectors before the rotation, {after} after"
    );
}

/// The largest absolute difference over the largest magnitude.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    diff / scale.max(1e-12)
}

/// A dissection saved for the inspector's cache loads back equal under its key;
/// under another key, cut short, or with counts that do not fit the vocabulary it
/// does not load (and is made again).
#[test]
fn a_saved_dissection_loads_back_and_a_broken_one_does_not() {
    use unitscope::dissect::report;
    let model = unitscope::model::demo::model(&Device::Cpu).unwrap();
    let set = ConceptSet::Demo(12);
    let settings = Settings::default();
    let layer = "features.1".to_string();
    let dissected = dissect::dissect(
        &model,
        &set,
        std::slice::from_ref(&layer),
        &settings,
        &mut |_, _| {},
    )
    .unwrap()
    .remove(0);
    let key = report::key(&model, &set, &settings, &layer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache/features.1.json");
    report::save(&path, &dissected, &key).unwrap();
    let loaded = report::load(&path, &key, &set, &settings).expect("loads back");
    assert_eq!(loaded.units, dissected.units);
    assert_eq!(loaded.thresholds, dissected.thresholds);
    assert_eq!(loaded.tally, dissected.tally);
    assert_eq!(loaded.sketch_error, dissected.sketch_error);

    assert!(report::load(&path, "another key", &set, &settings).is_none());
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    assert!(report::load(&path, &key, &set, &settings).is_none());
    // Whole JSON, but counts that do not fit the vocabulary, or top images past
    // the dataset's end.
    let mut saved: serde_json::Value = serde_json::from_slice(&text).unwrap();
    saved["tally"]["label_area"].as_array_mut().unwrap().pop();
    std::fs::write(&path, saved.to_string()).unwrap();
    assert!(report::load(&path, &key, &set, &settings).is_none());
    let mut saved: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let k = (0..dissected.units.len())
        .find(|&k| !dissected.tally.top_images(k).is_empty())
        .expect("a unit with top images");
    saved["tally"]["top"][k][0][1] = serde_json::json!(12);
    std::fs::write(&path, saved.to_string()).unwrap();
    assert!(report::load(&path, &key, &set, &settings).is_none());
    std::fs::write(&path, &text).unwrap();
    assert!(report::load(&path, &key, &set, &settings).is_some());
}
