"""unitscope's attribution methods against Captum (and pytorch-grad-cam for the CAM
variants Captum lacks, Zennit 1.0 for LRP) on the same CPU, in one run.

ResNet-18 at 224 px, batch 1 and 16, 2 threads, the same methods with the same
parameters: SmoothGrad and integrated gradients with 50 samples / steps in passes of
16 inputs (Captum: nt_samples_batch_size / internal_batch_size), occlusion with a
32 px window every 16 px (Captum: perturbations_per_eval 16). With
--captum-defaults, Captum runs those three as its users call them by default: all
50 samples / steps in one pass (NoiseTunnel, IntegratedGradients), one occlusion
per forward pass (Occlusion); unitscope keeps its passes of 16.

LIME and KernelSHAP: 200 coalitions of 50 SLIC superpixels per input, evaluated 16
per pass on both sides, zero baseline; Captum's side segments with scikit-image's
`slic` (n_segments=50, compactness=30) inside the timed call, as unitscope's does with
its own; LIME fits Captum's `SkLearnRidge(alpha=1)` under the cosine kernel of width
1. Captum explains a batch one input at a time with these two, so they run at batch
1 only. LRP: Zennit's `EpsilonPlusFlat` with its `ResNetCanonizer`, registered once
outside the timed call, which is one forward and one backward pass seeded with the
target logit (unitscope: `lrp`, the same composite). Each side reports
the median of --reps runs after a warm-up; with --rounds R the two sides alternate R
times per method and batch and each keeps its fastest round. The script prints
unitscope/peer ratios (below 1 means unitscope is faster). Timings cover the raw
maps (no upsampling, normalization or drawing) on both sides, except
pytorch-grad-cam, whose call also normalizes and resizes (a few ms).

    pip install torch torchvision captum==0.9.0 grad-cam==1.5.7 scikit-image scikit-learn
    pip install --ignore-requires-python zennit==1.0.0
    cargo build --release
    python bench/captum_attribution.py [--reps 3] [--rounds 1] [--batch 1,16]
                                       [--methods saliency,...] [--captum-defaults]
                                       [--model resnet18|resnet50] [--pass-batch 16]
                                       [--device cpu|cuda] [--binary PATH]

With --device cuda both sides run on the first GPU (a unitscope built by
scripts/build-cuda.sh, given with --binary) and every timing ends with a device
synchronize; --pass-batch sets the inputs per pass of both sides' sampling methods.
Both sides compute in float32: PyTorch's TF32 convolutions are turned off.

CI does not run this.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLES, WINDOW, STRIDE = 50, 32, 16
PERTURBATIONS, SEGMENTS, COMPACTNESS = 200, 50, 30
METHODS = [
    "saliency", "gradient-x-input", "deconvnet", "guided-backprop", "grad-cam", "grad-cam++",
    "layer-cam", "guided-grad-cam", "smoothgrad", "integrated-gradients", "occlusion",
    "lime", "kernel-shap", "lrp",
]
# Captum explains a batch one input at a time with these: batch 1 only.
PER_INPUT = {"lime", "kernel-shap"}


def superpixels(x):
    """scikit-image's SLIC of the one input of `x`, as Captum's feature mask."""
    import torch
    from skimage.segmentation import slic

    image = x[0].permute(1, 2, 0).detach().cpu().double().numpy()
    labels = slic(image, n_segments=SEGMENTS, compactness=COMPACTNESS, start_label=0,
                  channel_axis=-1, convert2lab=False)
    return torch.from_numpy(labels).to(x.device)[None, None].expand_as(x[:, :1])


def peer(name, model, x, target, defaults, pass_batch):
    """The peer's call for method `name`, as a closure, and who the peer is; with
    `defaults`, Captum's own batching for the sampling methods."""
    import captum.attr as ca

    batch = x.shape[0]
    batching = {}
    if name == "saliency":
        return "captum", lambda: ca.Saliency(model).attribute(x, target=target, abs=False)
    if name == "gradient-x-input":
        return "captum", lambda: ca.InputXGradient(model).attribute(x, target=target)
    if name == "deconvnet":
        return "captum", lambda: ca.Deconvolution(model).attribute(x, target=target)
    if name == "guided-backprop":
        return "captum", lambda: ca.GuidedBackprop(model).attribute(x, target=target)
    if name == "grad-cam":
        cam = ca.LayerGradCam(model, model.layer4)
        return "captum", lambda: cam.attribute(x, target=target, relu_attributions=True)
    if name == "guided-grad-cam":
        return "captum", lambda: ca.GuidedGradCam(model, model.layer4).attribute(x, target=target)
    if name == "smoothgrad":
        sigma = 0.15 * (x.max() - x.min()).item()
        tunnel = ca.NoiseTunnel(ca.Saliency(model))
        if not defaults:
            batching["nt_samples_batch_size"] = max(1, pass_batch // batch)
        return "captum", lambda: tunnel.attribute(
            x, nt_type="smoothgrad", nt_samples=SAMPLES, stdevs=sigma, target=target, abs=False,
            **batching,
        )
    if name == "integrated-gradients":
        ig = ca.IntegratedGradients(model)
        if not defaults:
            batching["internal_batch_size"] = pass_batch
        return "captum", lambda: ig.attribute(x, target=target, n_steps=SAMPLES, **batching)
    if name == "occlusion":
        occ = ca.Occlusion(model)
        if not defaults:
            batching["perturbations_per_eval"] = pass_batch
        return "captum", lambda: occ.attribute(
            x, sliding_window_shapes=(3, WINDOW, WINDOW), strides=(3, STRIDE, STRIDE),
            baselines=0.0, target=target, **batching,
        )
    if name == "lime":
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr._core.lime import get_exp_kernel_similarity_function

        lime = ca.Lime(model, interpretable_model=SkLearnRidge(alpha=1.0),
                       similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=1.0))
        return "captum", lambda: lime.attribute(
            x, target=target, feature_mask=superpixels(x), baselines=0.0, n_samples=PERTURBATIONS,
            perturbations_per_eval=pass_batch,
        )
    if name == "kernel-shap":
        shap = ca.KernelShap(model)
        return "captum", lambda: shap.attribute(
            x, target=target, feature_mask=superpixels(x), baselines=0.0, n_samples=PERTURBATIONS,
            perturbations_per_eval=pass_batch,
        )
    if name == "lrp":
        import torch
        from zennit.composites import EpsilonPlusFlat
        from zennit.torchvision import ResNetCanonizer

        EpsilonPlusFlat(canonizers=[ResNetCanonizer()]).register(model)

        def lrp():
            inputs = x.clone().requires_grad_(True)
            out = model(inputs)
            seed = torch.zeros_like(out)
            seed[:, target] = out[:, target].detach()
            return torch.autograd.grad(out, inputs, seed)[0]

        return "zennit", lrp
    from pytorch_grad_cam import GradCAMPlusPlus, LayerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"grad-cam++": GradCAMPlusPlus, "layer-cam": LayerCAM}[name]
    cam = cls(model=model, target_layers=[model.layer4])
    targets = [ClassifierOutputTarget(target)] * batch
    return "pytorch-grad-cam", lambda: cam(input_tensor=x, targets=targets)


def measure(name, batch, args):
    """One (method, batch) of the peer in this process; prints a JSON line."""
    import torch
    import torchvision

    torch.set_num_threads(2)
    # Float32 as unitscope computes it (its CUDA tests hold it to 1e-4 of the CPU):
    # on a GPU PyTorch's convolutions default to TF32, a 10-bit mantissa.
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    model = getattr(torchvision.models, args.model)().eval().to(args.device)
    for m in model.modules():  # Captum's rule hooks need out-of-place ReLUs
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    x = torch.randn(batch, 3, 224, 224, device=args.device)
    who, call = peer(name, model, x, 0, args.captum_defaults, args.pass_batch)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    def run():
        call()
        sync()

    run()
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"method": name, "batch": batch, "ms": statistics.median(times), "peer": who}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternating rounds per method and batch; each side keeps its best")
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--captum-defaults", action="store_true",
                    help="Captum's own batching for SmoothGrad, IG and occlusion")
    ap.add_argument("--model", default="resnet18", choices=["resnet18", "resnet50"])
    ap.add_argument("--pass-batch", type=int, default=16,
                    help="inputs per pass for SmoothGrad, IG and occlusion, both sides")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "unitscope"))
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        measure(args.one[0], int(args.one[1]), args)
        return
    methods, batches = args.methods.split(","), [int(b) for b in args.batch.split(",")]
    common = ["--reps", str(args.reps), "--model", args.model, "--pass-batch", str(args.pass_batch),
              "--device", args.device]

    def ours(name, batch):
        cmd = [args.binary, "bench", "attribution", "--json", "--reps", str(args.reps), "--methods", name,
               "--batch", str(batch), "--samples", str(SAMPLES), "--batch-size", str(args.pass_batch),
               "--occlusion", f"{WINDOW},{STRIDE}", "--perturbations", str(PERTURBATIONS),
               "--model", args.model, "--device", args.device]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def theirs(name, batch):
        one = [sys.executable, __file__, *common, "--one", name, str(batch)]
        one += ["--captum-defaults"] if args.captum_defaults else []
        out = subprocess.run(one, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    batching = "Captum's default batching" if args.captum_defaults else "same batching both sides"
    where = "2 threads" if args.device == "cpu" else "on the GPU"
    print(f"{args.model} 224 px, {where}, median of {args.reps}, best of {args.rounds} alternating "
          f"round(s), {batching}; ratio = unitscope / peer")
    print(f"{'method':<22} {'batch':>5} {'peer':<17} {'peer ms':>10} {'ours ms':>10} {'ratio':>6} {'passes':>8}")
    for name in methods:
        for batch in batches:
            if name in PER_INPUT and batch > 1:
                continue
            # The two sides alternate, so a noisy burst of the machine is unlikely to
            # land on every round of one side; each keeps its fastest round.
            rounds = [(ours(name, batch), theirs(name, batch)) for _ in range(args.rounds)]
            o = min((r[0] for r in rounds), key=lambda r: r["ms"])
            t = min((r[1] for r in rounds), key=lambda r: r["ms"])
            passes = f"{o['passes']['backward']}/{o['passes']['forward']}"
            print(f"{name:<22} {batch:>5} {t['peer']:<17} {t['ms']:>10.1f} {o['ms']:>10.1f} "
                  f"{o['ms'] / t['ms']:>6.2f} {passes:>8}", flush=True)


if __name__ == "__main__":
    main()
