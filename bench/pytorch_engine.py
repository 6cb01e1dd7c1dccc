"""unitscope's engine against PyTorch on the same CPU, in one run.

Times forward and forward + input gradient for ResNet-18, VGG-11 and
EfficientNet-Lite0 (timm's tf_efficientnet_lite0, the same network) at 224 px,
batch 1 and 16, with 2 threads and the closed-form weights both sides share; runs
`unitscope bench engine --json` in the same session; prints unitscope/PyTorch ratios
(below 1 means unitscope is faster) and peak RSS.

    pip install torch torchvision timm
    cargo build --release
    python bench/pytorch_engine.py [--reps 5] [--models resnet18,vgg11,efficientnet_lite0]

CI does not run this.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build(name):
    import torchvision

    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    from make_fixtures import fill  # the closed-form weights of synthetic.rs

    if name == "efficientnet_lite0":
        import timm

        return timm.create_model("tf_efficientnet_lite0")  # timing only: weights do not matter
    return fill(getattr(torchvision.models, name)())


def measure(name, batch, reps):
    """One (model, batch) in this process; prints a JSON line."""
    import torch

    torch.set_num_threads(2)
    model = build(name).eval()
    for m in model.modules():  # hooks and in-place ops aside, as attribution libraries run
        if hasattr(m, "inplace"):
            m.inplace = False
    x = torch.randn(batch, 3, 224, 224)

    def forward():
        with torch.no_grad():
            model(x)

    def forward_grad():
        xi = x.clone().requires_grad_(True)
        model(xi)[:, 0].sum().backward()
        return xi.grad

    def median(f):
        f()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    f, g = median(forward), median(forward_grad)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"model": name, "batch": batch, "forward_ms": f, "forward_grad_ms": g, "peak_rss_mb": peak}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--models", default="resnet18,vgg11,efficientnet_lite0")
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        measure(args.one[0], int(args.one[1]), args.reps)
        return
    binary = os.path.join(ROOT, "target", "release", "unitscope")
    cmd = [binary, "bench", "engine", "--json", "--reference-path", "--models", args.models,
           "--batch", args.batch, "--reps", str(args.reps)]
    ours = [json.loads(line) for line in subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()]
    print(f"{'model':<19} {'batch':>5}  {'torch fwd':>9}  {'torch f+g':>9}  {'ours fwd':>8}  {'ours f+g':>8}  "
          f"{'fwd ratio':>9}  {'f+g ratio':>9}  {'stock f+g':>9}  {'torch MB':>8}  {'ours MB':>7}")
    for name in args.models.split(","):
        for batch in map(int, args.batch.split(",")):
            # A fresh process per measurement, so its peak RSS is its own.
            out = subprocess.run([sys.executable, __file__, "--reps", str(args.reps), "--one", name, str(batch)],
                                 check=True, capture_output=True, text=True).stdout
            torch_ = json.loads(out.strip().splitlines()[-1])
            fast = next(o for o in ours if o["model"] == name and o["batch"] == batch and o["path"] == "fast")
            stock = next(o for o in ours if o["model"] == name and o["batch"] == batch and o["path"] == "reference")
            print(f"{name:<19} {batch:>5}  {torch_['forward_ms']:>9.1f}  {torch_['forward_grad_ms']:>9.1f}  "
                  f"{fast['forward_ms']:>8.1f}  {fast['forward_grad_ms']:>8.1f}  "
                  f"{fast['forward_ms'] / torch_['forward_ms']:>9.2f}  "
                  f"{fast['forward_grad_ms'] / torch_['forward_grad_ms']:>9.2f}  "
                  f"{stock['forward_grad_ms'] / torch_['forward_grad_ms']:>9.2f}  "
                  f"{torch_['peak_rss_mb']:>8.0f}  {fast['peak_rss_mb'] or 0:>7.0f}")


if __name__ == "__main__":
    main()
