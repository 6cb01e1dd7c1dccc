"""Reference LRP maps from Zennit 1.0.0, in float64.

The demo CNN (its shipped weights), VGG-11, ResNet-18 and AlexNet (closed-form
weights, 10 classes), as make_attribution_fixtures.py and make_fixtures.py build them. The
input is the generator's `input` tensor times 2 (within the zB box of both input
normalizations, mostly). Each composite of Zennit's that unitscope offers, under
the names unitscope gives them:

    epsilon-plus-flat          EpsilonPlusFlat()
    epsilon-gamma-box          EpsilonGammaBox(low, high): the model's input bounds,
                               (0 - mean) / std to (1 - mean) / std per channel
    epsilon-alpha2-beta1-flat  EpsilonAlpha2Beta1Flat()
    epsilon-plus               EpsilonPlus()
    ... .without-bias          the same with zero_params=['bias']

ResNet-18 takes Zennit's ResNetCanonizer (batch norms merged into their
convolutions, each residual addition a `Sum` module under the `Norm` rule); the
others have no batch norm. (Without biases the maps sum to the logit within 1e-4,
except AlexNet's, whose z⁺ denominators are zero at some units: 0.990 here and in
Zennit alike.) The relevance is seeded with each sample's target logit
(`R = f(x)` at the output) and read at the input.

    pip install torch torchvision safetensors
    pip install --ignore-requires-python zennit==1.0.0   # it asks for Python 3.11.11
    python tests/reference/make_lrp_fixtures.py
"""

import os
import sys

import torch
import torchvision
from safetensors.torch import save_file
from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer

sys.path.insert(0, os.path.dirname(__file__))
from make_attribution_fixtures import OUT, demo_model  # noqa: E402
from make_fixtures import NUM_CLASSES, fill, synthetic  # noqa: E402

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
DEMO = ([0.5] * 3, [0.25] * 3)

# name, builder, input shape, targets, normalization, canonizers
CASES = [
    ("demo", demo_model, (2, 3, 64, 64), [1, 3], DEMO, lambda: []),
    ("vgg11", lambda: fill(torchvision.models.vgg11(num_classes=NUM_CLASSES)), (2, 3, 32, 32),
     [3, 7], IMAGENET, lambda: []),
    ("resnet18", lambda: fill(torchvision.models.resnet18(num_classes=NUM_CLASSES)), (1, 3, 64, 64),
     [7], IMAGENET, lambda: [ResNetCanonizer()]),
    ("alexnet", lambda: fill(torchvision.models.alexnet(num_classes=NUM_CLASSES)), (1, 3, 96, 96),
     [3], IMAGENET, lambda: []),
]


def composites(low, high, canonizers):
    plain = {
        "epsilon-plus-flat": lambda **kw: EpsilonPlusFlat(canonizers=canonizers(), **kw),
        "epsilon-gamma-box": lambda **kw: EpsilonGammaBox(low, high, canonizers=canonizers(), **kw),
        "epsilon-alpha2-beta1-flat": lambda **kw: EpsilonAlpha2Beta1Flat(canonizers=canonizers(), **kw),
        "epsilon-plus": lambda **kw: EpsilonPlus(canonizers=canonizers(), **kw),
    }
    for name, make in plain.items():
        yield name, make()
        yield f"{name}.without-bias", make(zero_params=["bias"])


def relevance(model, composite, x, targets):
    with composite.context(model) as modified:
        x = x.clone().requires_grad_(True)
        out = modified(x)
        seed = torch.zeros_like(out)
        for i, t in enumerate(targets):
            seed[i, t] = out[i, t].detach()
        (rel,) = torch.autograd.grad(out, x, seed)
    return rel


def main():
    torch.set_grad_enabled(True)
    for name, build, shape, targets, (mean, std), canonizers in CASES:
        model = build().double().eval()
        x = synthetic("input", shape).double() * 2.0
        low = torch.tensor([(0 - m) / s for m, s in zip(mean, std)], dtype=torch.float64)
        high = torch.tensor([(1 - m) / s for m, s in zip(mean, std)], dtype=torch.float64)
        out = {
            "input": x,
            "targets": torch.tensor(targets, dtype=torch.float64),
            "low": low,
            "high": high,
            "logits": model(x).detach(),
        }
        box = (low.view(1, 3, 1, 1), high.view(1, 3, 1, 1))
        for key, composite in composites(*box, canonizers):
            rel = relevance(model, composite, x, targets)
            total = rel.flatten(1).sum(1)
            out[key] = rel.float()  # compared to 1e-4: float32 keeps the files small
            print(f"{name} {key}: sum/logit {(total / out['logits'][range(len(targets)), targets]).tolist()}")
        path = os.path.join(OUT, f"lrp_{name}.safetensors")
        save_file({k: v.contiguous() for k, v in out.items()}, path)
        os.chmod(path, 0o644)
        print("wrote", path)


if __name__ == "__main__":
    main()
