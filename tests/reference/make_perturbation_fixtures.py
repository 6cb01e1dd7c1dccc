"""Reference LIME and KernelSHAP maps from Captum 0.9, given the same superpixels and
coalitions.

The demo CNN and ResNet-18 (closed-form weights) in float64, one synthetic input
each, as make_attribution_fixtures.py builds them. The superpixels are a fixed
Voronoi pattern of irregular regions (stored as `mask`); the coalitions are drawn
by torch.bernoulli(0.5) from a fixed seed (stored as `coalitions`) and handed to
Captum's `Lime` one by one through its `perturb_func`. Captum does the rest with its
defaults for images: cosine distance under an exponential kernel of width 1
(`get_exp_kernel_similarity_function`), and here `SkLearnRidge(alpha=1.0)` as the
interpretable model. Two baselines: zero, and each region's mean value
(`baseline.mean`, computed here as unitscope computes it).

GradientSHAP: Captum's `GradientShap` with 12 samples, noise σ = 0.1 and a
distribution of three baselines (zero and two noise images, `gshap.distribution`);
its draws (noisy input, baseline, α per sample) are recorded by wrapping its
`_scale_input` and stored (`gshap.noisy`, `gshap.baselines`, `gshap.alpha`).

KernelSHAP: Captum's `KernelShap` from the zero baseline, its coalitions replaced by
stored ones (`shap_coalitions`: the full and the empty coalition first, as Captum
draws them, then sizes drawn with p(k) ∝ (M-1)/(k(M-k)) and uniform subsets of that
size, as Captum's `kernel_shap_perturb_generator` draws them), weighted by Captum
(10⁶ on the two ends, 1 elsewhere) and fitted by its `SkLearnLinearRegression`.

    pip install torch torchvision safetensors captum==0.9.0 scikit-learn
    python tests/reference/make_perturbation_fixtures.py
"""

import os
import sys

import torch
from captum._utils.models.linear_model import SkLearnRidge
import captum.attr._core.gradient_shap as gradient_shap_module
from captum.attr import GradientShap, KernelShap, Lime
from captum.attr._core.lime import get_exp_kernel_similarity_function
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from make_attribution_fixtures import OUT, demo_model, resnet18  # noqa: E402
from make_fixtures import synthetic_input  # noqa: E402

SAMPLES = 96
REGIONS = 14
CASES = [("demo", demo_model, 2), ("resnet18", resnet18, 7)]


def voronoi(h, w, regions, seed):
    """Each pixel's nearest of `regions` seeded points: irregular, connected regions."""
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(regions, 2, generator=g) * torch.tensor([h, w])
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    d = (ys[None] - points[:, 0, None, None]) ** 2 + (xs[None] - points[:, 1, None, None]) ** 2
    return d.argmin(0)


def region_means(x, mask):
    """Each region's mean value per channel, painted on the region."""
    out = torch.zeros_like(x)
    for r in range(int(mask.max()) + 1):
        inside = mask == r
        for c in range(x.shape[1]):
            out[0, c][inside] = x[0, c][inside].mean()
    return out


def lime(model, x, target, mask, coalitions, baseline):
    draws = iter(coalitions)

    def perturb(_, **__):
        return next(draws).unsqueeze(0)

    explainer = Lime(
        model,
        interpretable_model=SkLearnRidge(alpha=1.0),
        similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=1.0),
        perturb_func=perturb,
    )
    return explainer.attribute(
        x, target=target, feature_mask=mask[None, None], baselines=baseline,
        n_samples=len(coalitions), perturbations_per_eval=16, return_input_shape=True,
    )


def shap_coalitions(m, n, seed):
    """The full and empty coalitions, then n - 2 drawn by the Shapley kernel's sizes."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(1, m)
    sizes = torch.multinomial((m - 1) / (k * (m - k)).double(), n - 2, replacement=True, generator=g) + 1
    rows = [torch.ones(m, dtype=torch.long), torch.zeros(m, dtype=torch.long)]
    for size in sizes.tolist():
        z = torch.zeros(m, dtype=torch.long)
        z[torch.randperm(m, generator=g)[:size]] = 1
        rows.append(z)
    return torch.stack(rows)


def kernel_shap(model, x, target, mask, coalitions):
    draws = iter(coalitions)
    explainer = KernelShap(model)
    explainer.perturb_func = lambda *_, **__: next(draws).unsqueeze(0)
    return explainer.attribute(
        x, target=target, feature_mask=mask[None, None], baselines=0.0,
        n_samples=len(coalitions), perturbations_per_eval=16, return_input_shape=True,
    )


def gradient_shap(model, x, target):
    g = torch.Generator().manual_seed(9)
    distribution = torch.cat([torch.zeros_like(x), torch.rand(2, *x.shape[1:], generator=g, dtype=x.dtype) * 2 - 1])
    recorded = []
    scale = gradient_shap_module._scale_input

    def recording(inp, baseline, alpha):
        recorded.append((inp.detach().clone(), baseline.detach().clone(), alpha.detach().clone()))
        return scale(inp, baseline, alpha)

    gradient_shap_module._scale_input = recording
    try:
        torch.manual_seed(11)
        attr = GradientShap(model).attribute(
            x, baselines=distribution, target=target, n_samples=12, stdevs=0.1
        )
    finally:
        gradient_shap_module._scale_input = scale
    noisy, baselines, alpha = (torch.cat(parts) for parts in zip(*recorded))
    return {
        "gshap.distribution": distribution,
        "gshap.noisy": noisy,
        "gshap.baselines": baselines,
        "gshap.alpha": alpha,
        "gshap": attr,
    }


def run_case(name, build, target):
    model = build().double().eval()
    x = synthetic_input((1, 3, 64, 64)).double()
    mask = voronoi(64, 64, REGIONS, seed=len(name))
    coalitions = torch.bernoulli(
        torch.full((SAMPLES, REGIONS), 0.5), generator=torch.Generator().manual_seed(5)
    ).long()
    mean = region_means(x, mask)
    out = {
        "input": x,
        "target": torch.tensor([target], dtype=torch.float64),
        "mask": mask.double(),
        "coalitions": coalitions.double(),
        "baseline.mean": mean,
        "lime.zero": lime(model, x, target, mask, coalitions, 0.0),
        "lime.mean": lime(model, x, target, mask, coalitions, mean),
    }
    shap = shap_coalitions(REGIONS, SAMPLES, seed=6)
    out["shap_coalitions"] = shap.double()
    out["kernel_shap.zero"] = kernel_shap(model, x, target, mask, shap)
    out.update(gradient_shap(model, x, target))
    save_file(
        {k: v.detach().float().contiguous() for k, v in out.items()},
        os.path.join(OUT, f"lime_{name}.safetensors"),
    )
    print(name, {k: tuple(v.shape) for k, v in out.items()})


def main():
    for case in CASES:
        run_case(*case)


if __name__ == "__main__":
    main()
