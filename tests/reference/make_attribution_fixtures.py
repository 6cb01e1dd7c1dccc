"""Reference attribution maps from Captum 0.9 and pytorch-grad-cam 1.5.7.

Two models, both in float64: the embedded demo CNN (assets/demo-model.safetensors)
and torchvision's ResNet-18 with the engine tests' closed-form weights (batch-norm
statistics away from identity), each on the generator's synthetic input. Maps are
stored as float32 safetensors in tests/fixtures/attribution/.

    pip install torch torchvision safetensors captum==0.9.0 grad-cam==1.5.7
    python tests/reference/make_attribution_fixtures.py

SmoothGrad: Captum's NoiseTunnel draws its own noise; a forward pre-hook records the
noisy inputs it builds, so the standard-normal draws (noise / sigma) are stored for
the Rust side to add the same noise. Sigma is 0.15 x (max - min) of each input, as
unitscope computes it; NoiseTunnel's `stdevs` is per input tensor, so each sample
runs on its own.
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import PlainCnn, fill, synthetic_input  # noqa: E402

import torchvision  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "attribution")
SMOOTH_SAMPLES = 4
LEVEL = 0.15
IG_STEPS = 8
IG_RULES = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


def demo_model():
    weights = load_file(os.path.join(ROOT, "assets", "demo-model.safetensors"))
    classes = weights["fc.weight"].shape[0]
    model = PlainCnn([16, 32, 64, 128], False, classes)
    model.load_state_dict(weights)
    return model


def resnet18():
    return fill(torchvision.models.resnet18(num_classes=10))


# name, builder, input shape, targets, CAM layer (unitscope name, module path)
CASES = [
    ("demo", demo_model, (2, 3, 64, 64), [1, 3], ("features.10", "features.10")),
    ("resnet18", resnet18, (1, 3, 64, 64), [7], ("layer3", "layer3")),
]


def module(model, path):
    return dict(model.named_modules())[path]


def smooth_grad(model, x, targets):
    """NoiseTunnel(Saliency) per sample, for each statistic, and the draws it made."""
    out, draws = {}, []
    for nt_type in ["smoothgrad", "smoothgrad_sq", "vargrad"]:
        maps, noise = [], []
        for i in range(x.shape[0]):
            xi = x[i : i + 1]
            sigma = LEVEL * (xi.max() - xi.min()).item()
            seen = []
            hook = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
            torch.manual_seed(i)
            attr = NoiseTunnel(Saliency(model)).attribute(
                xi, nt_type=nt_type, nt_samples=SMOOTH_SAMPLES, stdevs=sigma, target=targets[i], abs=False
            )
            hook.remove()
            (noisy,) = seen
            assert noisy.shape[0] == SMOOTH_SAMPLES
            noise.append((noisy - xi) / sigma)
            maps.append(attr.detach())
        out[f"smoothgrad.{nt_type}"] = torch.cat(maps)
        draws.append(torch.stack(noise, 1))  # [samples, N, C, H, W]
    for d in draws[1:]:
        assert torch.equal(d, draws[0]), "NoiseTunnel drew different noise per statistic"
    out["smoothgrad.noise"] = draws[0]
    return out


def cams(model, x, targets, layer_path):
    layer = module(model, layer_path)
    cam_targets = [ClassifierOutputTarget(t) for t in targets]
    out = {}
    for name, cls in [("grad_cam", GradCAM), ("grad_cam_plus_plus", GradCAMPlusPlus), ("layer_cam", LayerCAM)]:
        with cls(model=model, target_layers=[layer]) as cam:
            out[f"{name}.display"] = torch.from_numpy(cam(input_tensor=x, targets=cam_targets))
    out["grad_cam.raw"] = LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)[:, 0]
    for mode in ["nearest", "bilinear"]:
        out[f"guided_grad_cam.{mode}"] = GuidedGradCam(model, layer).attribute(
            x, target=targets, interpolate_mode=mode
        )
    return out


def run_case(name, build, shape, targets, cam_layer):
    model = build().double().eval()
    x = synthetic_input(shape).double()
    out = {"input": x, "targets": torch.tensor(targets, dtype=torch.float64)}
    out["saliency"] = Saliency(model).attribute(x, target=targets, abs=False)
    out["deconvnet"] = Deconvolution(model).attribute(x, target=targets)
    out["guided_backprop"] = GuidedBackprop(model).attribute(x, target=targets)
    out.update(cams(model, x, targets, cam_layer[1]))
    out.update(smooth_grad(model, x, targets))
    # The rules from a generic baseline: at the zero baseline (alpha = 0 in the left
    # and trapezoid rules) every feature map is constant, max pooling meets exact
    # ties, and which tied element takes the gradient depends on the last bit of
    # each implementation's convolution.
    baseline = synthetic_input(shape).double().flip(-1) * 0.25
    out["ig_baseline"] = baseline
    for rule in IG_RULES:
        attr, delta = IntegratedGradients(model).attribute(
            x, baselines=baseline, target=targets, n_steps=IG_STEPS, method=rule,
            return_convergence_delta=True,
        )
        out[f"ig.{rule}"] = attr
        out[f"ig_delta.{rule}"] = delta
    attr, delta = IntegratedGradients(model).attribute(
        x, target=targets, n_steps=IG_STEPS, return_convergence_delta=True
    )
    out["ig.default"] = attr
    out["ig_delta.default"] = delta
    out["occlusion"] = Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 12, 12), strides=(3, 8, 8), baselines=0.0, target=targets
    )
    save_file(
        {k: v.detach().float().contiguous() for k, v in out.items()},
        os.path.join(OUT, f"{name}.safetensors"),
    )
    print(name, {k: tuple(v.shape) for k, v in out.items()})


def main():
    os.makedirs(OUT, exist_ok=True)
    for case in CASES:
        run_case(*case)


if __name__ == "__main__":
    main()
