"""unitscope's feature visualization against torch-lucent 0.1.8 on the same CPU.

The same work on both sides: ResNet-18 with the closed-form weights both share
(tests/reference/make_fixtures.py's `fill`, unitscope's synthetic weights), the
channel objective on the first N units of a layer (one image each, optimized in
one batch), a Fourier parameterization with decorrelated colours, Lucid's standard
transforms, Adam at 0.05, the same number of steps, 2 threads. Prints each side's
time per step and the objective both reach on the final, untransformed images
(the mean over the units of each unit's spatial mean), and the ratio of times.
Each side runs `--rounds` times, alternating, and keeps its fastest round: on a
shared machine one round of either side can take half as long again.

The image side defaults to 224 px: render_vis upsamples anything smaller to 224
before the model, which unitscope does not, so only at 224 and above is the work
the same.

    pip install torch torchvision torch-lucent==0.1.8 kornia==0.4.1 decorator ipython
    cargo build --release
    python bench/lucent_featvis.py [--steps 64] [--units 1,8] [--layer layer3] [--size 224] [--rounds 3]

CI does not run this.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def lucent_side(layer, units, size, steps):
    import numpy as np
    import torch
    import torchvision
    from lucent.optvis import objectives, param, render

    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    from make_fixtures import fill

    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)
    model = fill(torchvision.models.resnet18()).eval()
    model.requires_grad_(False)
    objective = sum(objectives.channel(layer, i, batch=i) for i in range(units))

    def run(n):
        return render.render_vis(
            model,
            objective,
            param_f=lambda: param.image(size, batch=units, fft=True, decorrelate=True),
            thresholds=(n,),
            show_image=False,
            progress=False,
        )

    run(1)  # warm-up
    start = time.perf_counter()
    images = run(steps)[0]
    per_step = (time.perf_counter() - start) / steps

    # The objective on the final images, untransformed, as unitscope reports it.
    x = torch.tensor(images).permute(0, 3, 1, 2).float()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda m, i, o: seen.setdefault("a", o)
    )
    with torch.no_grad():
        model((x - mean) / std)
    handle.remove()
    a = seen["a"]
    value = float(sum(a[i, i].mean() for i in range(units)) / units)
    return per_step * 1e3, value


def our_side(layer, units, size, steps):
    binary = os.path.join(ROOT, "target", "release", "unitscope")
    cmd = [binary, "bench", "units", "--only", "featvis", "--json", "--steps", str(steps),
           "--units", str(units), "--layer", layer, "--size", str(size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    row = next(r for r in rows if r["model"] == "ResNet-18")
    return row["ms_per_step"], row["mean_value"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--units", default="1,8")
    ap.add_argument("--layer", default="layer3")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"ResNet-18 {args.layer}, {args.size} px, {args.steps} steps, Fourier + decorrelated, "
          "Lucid's transforms, Adam 0.05, 2 threads")
    print(f"{'units':>5} {'lucent ms/step':>15} {'ours ms/step':>13} {'ratio':>6} "
          f"{'lucent value':>13} {'ours value':>11}")
    for units in (int(u) for u in args.units.split(",")):
        rounds = [(lucent_side(args.layer, units, args.size, args.steps),
                   our_side(args.layer, units, args.size, args.steps))
                  for _ in range(args.rounds)]
        theirs, their_value = min(r[0] for r in rounds)
        ours, our_value = min(r[1] for r in rounds)
        print(f"{units:>5} {theirs:>15.1f} {ours:>13.1f} {ours / theirs:>6.2f} "
              f"{their_value:>13.3f} {our_value:>11.3f}")


if __name__ == "__main__":
    main()
