"""GPU check and micro-benchmark (run by hand on a CUDA machine; never in CI).

    python bench/gpu_check.py [--out DIR]

1. Every registry model runs forward + backward under CUDA autocast (fp16 + GradScaler, as the
   train loop does) on both input sizes, with finite loss and gradients.
2. Training-step throughput of the baseline CNN: fp32 vs mixed precision on the GPU, and fp32 on
   the CPU, measured in the same run (samples/s and ratios).
3. The caption stage's ``Classifier`` on the GPU gives the CPU's scores (within fp16 tolerance),
   and its inference throughput (one-second windows per second) on both devices.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from sound_captions.bundle import ModelBundle, save_bundle
from sound_captions.features import FeatureConfig
from sound_captions.models import MODEL_NAMES, build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def check_models(device: torch.device) -> dict:
    results = {}
    for name in MODEL_NAMES:
        # Cnn14 (panns_cnn14) takes one-channel PANNs log-mel images only
        shapes = ((1, 64, 101),) if name == "panns_cnn14" else ((1, 128, 128), (3, 256, 256))
        for shape in shapes:
            model = build_model(name, 5, shape).to(device)
            optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
            scaler = torch.amp.GradScaler("cuda")
            x = torch.randn(8, *shape, device=device)
            y = (torch.rand(8, 5, device=device) > 0.5).float()
            losses = []
            for _ in range(6):  # GradScaler skips the first steps whose scaled grads overflow
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.float16):
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(float(loss.detach()))
            finite = all(np.isfinite(losses)) and all(bool(torch.isfinite(p).all()) for p in model.parameters())
            results[f"{name}@{'x'.join(map(str, shape))}"] = {
                "first_loss": losses[0], "last_loss": losses[-1], "finite": finite, "grad_scale": float(scaler.get_scale()),
            }
    return results


def train_throughput(device: torch.device, amp: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model("baseline", 10, (1, 128, 128)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    x = torch.randn(batch, 1, 128, 128, device=device)
    y = (torch.rand(batch, 10, device=device) > 0.8).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def classifier_check(tmp: str) -> dict:
    from sound_captions.caption.stages import Classifier

    torch.manual_seed(0)
    model = build_model("baseline", 3, (1, 128, 128))
    labels = ["/m/02fs_r", "/m/04rlf", "/m/0chx_"]
    bundle = ModelBundle(
        architecture="baseline", hparams={}, state_dict=model.state_dict(), labels=labels,
        label_names={m: m for m in labels}, caption_text={}, thresholds={m: 0.5 for m in labels}, feature_config=FeatureConfig(),
    )
    path = os.path.join(tmp, "m.bundle")
    save_bundle(bundle, path)
    n = 2048
    spec = np.random.default_rng(0).normal(size=(n, 128, 128, 1)).astype(np.float16)
    batch = {"kind": np.asarray(["window"] * n, dtype=object), "spectrogram": spec}
    out = {}
    for device in ("cuda", "cpu"):
        clf = Classifier(path, threads=os.cpu_count() or 1)
        if device == "cpu":
            clf.device = torch.device("cpu")
            clf.model = clf.model.to("cpu")
        scores = clf({"kind": batch["kind"][:256], "spectrogram": spec[:256]})["scores"]  # warm-up
        start = time.perf_counter()
        for i in range(0, n, 256):
            scores_i = clf({"kind": batch["kind"][i : i + 256], "spectrogram": spec[i : i + 256]})["scores"]
        _sync(torch.device(device))
        out[device] = {"windows_per_s": n / (time.perf_counter() - start), "first": scores, "last": scores_i}
    diff = float(np.abs(out["cuda"]["first"] - out["cpu"]["first"]).max())
    return {
        "max_abs_score_diff_gpu_vs_cpu": diff,
        "gpu_windows_per_s": out["cuda"]["windows_per_s"],
        "cpu_windows_per_s": out["cpu"]["windows_per_s"],
        "gpu_over_cpu": out["cuda"]["windows_per_s"] / out["cpu"]["windows_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    device = torch.device("cuda")
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    report["models"] = check_models(device)
    report["train_samples_per_s"] = {
        "gpu_amp": train_throughput(device, True, 256, 30),
        "gpu_fp32": train_throughput(device, False, 256, 30),
        "cpu_fp32": train_throughput(torch.device("cpu"), False, 32, 3),
    }
    t = report["train_samples_per_s"]
    report["train_ratios"] = {"gpu_amp/gpu_fp32": t["gpu_amp"] / t["gpu_fp32"], "gpu_amp/cpu_fp32": t["gpu_amp"] / t["cpu_fp32"]}
    with tempfile.TemporaryDirectory() as tmp:
        report["classifier"] = classifier_check(tmp)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gpu_check.json"), "w") as handle:
            handle.write(text)
    assert all(r["finite"] for r in report["models"].values()), "a model produced non-finite loss or gradients"
    assert report["classifier"]["max_abs_score_diff_gpu_vs_cpu"] < 1e-2


if __name__ == "__main__":
    main()
