"""unitscope's engine against PyTorch on the same CPU, in one run.

Times forward and forward + input gradient for ResNet-18, VGG-11 and
EfficientNet-Lite0 (timm's tf_efficientnet_lite0, the same network) at 224 px,
batch 1 and 16, with 2 threads and the closed-form weights both sides share; runs
`unitscope bench engine --json` in the same session; prints unitscope/PyTorch ratios
(below 1 means unitscope is faster) and peak RSS.

Shared machines are noisy in bursts, so the two sides alternate, one (model, batch)
at a time, for --rounds rounds; each side keeps its best round (the median of --reps
runs within a round). The stock-Candle ratio comes from one extra run of
`--reference-path` with one repetition (it is 5-35x slower).

    pip install torch torchvision timm
    cargo build --release
    python bench/pytorch_engine.py [--reps 5] [--rounds 3] [--models resnet18,vgg11,efficientnet_lite0]
                                   [--rule gradient|guided-backprop|deconvnet]
                                   [--device cpu|cuda] [--binary PATH]

With --device cuda both sides run on the first GPU (a unitscope built by
scripts/build-cuda.sh, given with --binary), every timing ends with a device
synchronize, and the stock-Candle column and peak RSS are left out (they describe
the CPU). Both sides compute in float32: PyTorch's TF32 convolutions are turned off.

Under a rule, PyTorch's rectifiers become the reference script's rule-following
autograd function (as hook-based libraries do, each a Python-level op).

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


def measure(name, batch, reps, rule, device):
    """One (model, batch) in this process; prints a JSON line."""
    import torch

    torch.set_num_threads(2)
    # Float32 as unitscope computes it (its CUDA tests hold it to 1e-4 of the CPU):
    # on a GPU PyTorch's convolutions default to TF32, a 10-bit mantissa.
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    model = build(name).eval().to(device)
    if rule != "gradient":
        from make_fixtures import set_rule  # every ReLU/ReLU6 backpropagates by `rule`

        set_rule(model, rule)
    for m in model.modules():  # hooks and in-place ops aside, as attribution libraries run
        if hasattr(m, "inplace"):
            m.inplace = False
    # Only the input gradient, as unitscope computes it (and as torch.autograd.grad in
    # Captum does): no weight gradients.
    model.requires_grad_(False)
    x = torch.randn(batch, 3, 224, 224, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        with torch.no_grad():
            model(x)
        sync()

    def forward_grad():
        xi = x.clone().requires_grad_(True)
        model(xi)[:, 0].sum().backward()
        sync()
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
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rule", default="gradient", choices=["gradient", "guided-backprop", "deconvnet"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "unitscope"))
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        measure(args.one[0], int(args.one[1]), args.reps, args.rule, args.device)
        return
    on_cpu = args.device == "cpu"

    def ours(name, batch, reps, reference=False):
        cmd = [args.binary, "bench", "engine", "--json", "--models", name, "--batch", str(batch), "--reps", str(reps),
               "--rule", args.rule, "--device", args.device]
        out = subprocess.run(cmd + (["--reference-path"] if reference else []),
                             check=True, capture_output=True, text=True).stdout
        runs = [json.loads(line) for line in out.splitlines()]
        return next(r for r in runs if r["path"] == ("reference" if reference else "fast"))

    def torch_(name, batch):
        # A fresh process per measurement, so its peak RSS is its own.
        out = subprocess.run([sys.executable, __file__, "--reps", str(args.reps), "--rule", args.rule,
                              "--device", args.device, "--one", name, str(batch)],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def best(runs):
        return {
            "forward_ms": min(r["forward_ms"] for r in runs),
            "forward_grad_ms": min(r["forward_grad_ms"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] or 0 for r in runs),
        }

    print(f"{'model':<19} {'batch':>5}  {'torch fwd':>9}  {'torch f+g':>9}  {'ours fwd':>8}  {'ours f+g':>8}  "
          f"{'fwd ratio':>9}  {'f+g ratio':>9}  {'stock f+g':>9}  {'torch MB':>8}  {'ours MB':>7}", flush=True)
    for name in args.models.split(","):
        for batch in map(int, args.batch.split(",")):
            theirs, mine = [], []
            for round_ in range(args.rounds):
                pair = [lambda: theirs.append(torch_(name, batch)),
                        lambda: mine.append(ours(name, batch, args.reps))]
                for run in pair if round_ % 2 == 0 else reversed(pair):
                    run()
            t, f = best(theirs), best(mine)
            stock, torch_mb, ours_mb = "-", "-", "-"
            if on_cpu:
                stock = f"{ours(name, batch, 1, reference=True)['forward_grad_ms'] / t['forward_grad_ms']:.2f}"
                torch_mb, ours_mb = f"{t['peak_rss_mb']:.0f}", f"{f['peak_rss_mb']:.0f}"
            print(f"{name:<19} {batch:>5}  {t['forward_ms']:>9.1f}  {t['forward_grad_ms']:>9.1f}  "
                  f"{f['forward_ms']:>8.1f}  {f['forward_grad_ms']:>8.1f}  "
                  f"{f['forward_ms'] / t['forward_ms']:>9.2f}  "
                  f"{f['forward_grad_ms'] / t['forward_grad_ms']:>9.2f}  "
                  f"{stock:>9}  {torch_mb:>8}  {ours_mb:>7}", flush=True)


if __name__ == "__main__":
    main()
