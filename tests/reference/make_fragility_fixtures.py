"""Reference max-sensitivity from Quantus 0.6 (`MaxSensitivity`), given the same maps
and perturbations.

The demo CNN (its shipped weights) in float32, two synthetic inputs (the generator's
`input` tensor times 0.1, each explained for its predicted class), the plain
gradient of the class logit as the explanation (unitscope's `saliency`). Quantus
draws its perturbations with `batch_uniform_noise`; here its `perturb_func` replays
six draws of U(-0.05, 0.05) made from a fixed seed and stored (`perturbed`), none of
which changes a prediction (checked). Quantus then computes
max_s ‖a − a_s‖_F / ‖a‖_F over the raw maps (normalise=False, abs=False).

    pip install torch torchvision safetensors
    pip install --ignore-requires-python quantus==0.6.0
    python tests/reference/make_fragility_fixtures.py
"""

import os
import sys

import numpy as np
import quantus
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from make_attribution_fixtures import OUT, demo_model  # noqa: E402
from make_fixtures import synthetic  # noqa: E402

SAMPLES = 6
RADIUS = 0.05


def gradient(model, inputs, targets, **_):
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32).requires_grad_(True)
    out = model(x)
    picked = out[torch.arange(len(x)), torch.as_tensor(np.asarray(targets))]
    (g,) = torch.autograd.grad(picked.sum(), x)
    return g.detach().numpy()


def main():
    model = demo_model().float().eval()
    x = (synthetic("input", (2, 3, 64, 64)) * 0.1).float()
    with torch.no_grad():
        classes = model(x).argmax(1)
    rng = np.random.default_rng(0)
    perturbed = [
        x.numpy() + rng.uniform(-RADIUS, RADIUS, size=x.shape).astype(np.float32)
        for _ in range(SAMPLES)
    ]
    with torch.no_grad():
        for p in perturbed:
            assert (model(torch.from_numpy(p)).argmax(1) == classes).all(), "a draw changed a prediction"
    replay = iter(perturbed)

    def perturb(arr, **_):
        return next(replay).reshape(arr.shape)

    metric = quantus.MaxSensitivity(
        nr_samples=SAMPLES,
        lower_bound=RADIUS,
        perturb_func=perturb,
        return_nan_when_prediction_changes=True,
        disable_warnings=True,
    )
    maps = gradient(model, x.numpy(), classes.numpy())
    scores = metric(
        model=model,
        x_batch=x.numpy(),
        y_batch=classes.numpy(),
        a_batch=maps,
        explain_func=gradient,
        device="cpu",
    )
    print("max-sensitivity", scores)
    out = {
        "input": x,
        "classes": classes.double(),
        "perturbed": torch.from_numpy(np.stack(perturbed)),
        "max_sensitivity": torch.tensor(scores, dtype=torch.float64),
    }
    path = os.path.join(OUT, "fragility_demo.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    os.chmod(path, 0o644)
    print("wrote", path)


if __name__ == "__main__":
    main()
