"""Inference variants of a caption model against the caption job's own forward pass (eager
fp32, BatchNorm folded, channels-last, passes of ``cpu_forward_batch`` windows), in one run on
the same windows: windows/s and how far each variant's probabilities move.

    python bench/bench_inference_variants.py                      # the default model and the baseline
    python bench/bench_inference_variants.py --model run/model.bundle

Variants: static int8 (FX graph mode, calibrated on the windows themselves, for the x86 and
fbgemm engines), TorchScript trace + freeze, and ``torch.compile`` (inductor; its compile time is
printed apart, since every caption actor pays it at start-up). Issue 11 admits an exported or
quantised path only if its scores stay within 1e-3 of eager fp32: the verdict column says
whether each one does. The windows are spectrograms of a generated video (beeps, music, noise,
silence), so a briefly trained bundle sees inputs of the kind it was trained on.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import warnings
from pathlib import Path

TOLERANCE = 1e-3  # issue 11: scores of an exported or quantised path vs eager fp32


def windows_of(video: Path, cfg):
    import numpy as np
    import torch

    from sound_captions.audio import stream_audio
    from sound_captions.feature_config import frame_windows
    from sound_captions.features import spectrograms_where, to_model_input

    audio = np.concatenate(list(stream_audio(video, chunk_s=60)))
    windows = frame_windows(audio, cfg)
    spec = spectrograms_where(windows, np.ones(len(windows), bool), cfg)
    return to_model_input(spec).contiguous(memory_format=torch.channels_last)


def probabilities(model, x, forward_batch: int):
    import torch

    with torch.inference_mode():
        return torch.cat([torch.sigmoid(model(part)) for part in torch.split(x, forward_batch)])


def windows_per_s(model, x, forward_batch: int, repeats: int) -> float:
    probabilities(model, x[: 4 * forward_batch], forward_batch)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        probabilities(model, x, forward_batch)
    return len(x) * repeats / (time.perf_counter() - started)


def variants(eager, x):
    """name → (a zero-argument builder of the model, the input layout it takes)."""
    import torch

    def int8(engine: str):
        def build():
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            torch.backends.quantized.engine = engine
            flat = x.contiguous()
            prepared = prepare_fx(copy.deepcopy(eager).to(memory_format=torch.contiguous_format), get_default_qconfig_mapping(engine), (flat[:8],))
            with torch.inference_mode():
                for part in torch.split(flat, 32):
                    prepared(part)
            return convert_fx(prepared)
        return build, x.contiguous()

    return {
        "int8 static (x86)": int8("x86"),
        "int8 static (fbgemm)": int8("fbgemm"),
        "TorchScript trace + freeze": (lambda: torch.jit.freeze(torch.jit.trace(eager, x[:8]).eval()), x),
        "torch.compile (inductor)": (lambda: torch.compile(eager), x),
    }


def measure(bundle_path: str, x_video: Path, threads: int, forward_batch: int, repeats: int) -> dict:
    import torch

    from sound_captions.bundle import load_bundle
    from sound_captions.models.fuse import fused_for_inference

    torch.set_num_threads(threads)
    bundle = load_bundle(bundle_path)
    x = windows_of(x_video, bundle.feature_config)
    eager = fused_for_inference(bundle.build_model()).to(memory_format=torch.channels_last).eval()
    reference = probabilities(eager, x, forward_batch)
    base_speed = windows_per_s(eager, x, forward_batch, repeats)
    out = {"windows": len(x), "eager_fp32_windows_per_s": round(base_speed, 1), "variants": {}}
    for name, (build, inputs) in variants(eager, x).items():
        try:
            started = time.perf_counter()
            model = build()
            probabilities(model, inputs[:forward_batch], forward_batch)  # compiles, for torch.compile
            prepare_s = time.perf_counter() - started
            got = probabilities(model, inputs, forward_batch)
            speed = windows_per_s(model, inputs, forward_batch, repeats)
        except Exception as error:  # a variant this torch cannot build is a finding, not a crash
            out["variants"][name] = {"error": f"{type(error).__name__}: {error}"[:300]}
            continue
        moved = (got - reference).abs()
        out["variants"][name] = {
            "windows_per_s": round(speed, 1), "ratio_to_eager": round(speed / base_speed, 3), "prepare_s": round(prepare_s, 1),
            "max_abs_dp": float(moved.max()), "mean_abs_dp": float(moved.mean()),
            "decisions_flipped_at_0.5": int(((got > 0.5) != (reference > 0.5)).sum()),
            "within_tolerance": bool(moved.max() <= TOLERANCE),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="A model bundle (default: bundles of the architecture `train` uses by default and of the study's baseline, trained briefly on generated media).")
    parser.add_argument("--threads", type=int, default=2, help="Torch threads (the caption actor's share of this machine).")
    parser.add_argument("--forward-batch", type=int, default=None, help="Windows per forward pass (default: CaptionOptions' cpu_forward_batch).")
    parser.add_argument("--seconds", type=int, default=240, help="Length of the generated video whose windows are measured.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None, help="Also write the figures to this file.")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # torch.ao's deprecation notices drown the table

    from sound_captions.caption.options import CaptionOptions
    from sound_captions.testing.bundles import train_tiny_bundle
    from sound_captions.testing.media import make_media
    from sound_captions.train import TrainConfig

    forward_batch = args.forward_batch or CaptionOptions(out="-", model="-").cpu_forward_batch
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sc-bench-variants-"))
    pattern = [("beep", 10), ("music", 10), ("silence", 5), ("noise", 10), ("music+beep", 5)]
    video = make_media(work / "video.mp4", pattern * max(1, args.seconds // 40), seed=1)
    if args.model:
        models = {"given": args.model}
    else:
        models = {}
        for name in dict.fromkeys([TrainConfig.model, "baseline"]):
            models[name] = str(work / f"{name}.bundle")
            train_tiny_bundle(models[name], 0, epochs=3, architecture=name)
    figures = {"threads": args.threads, "forward_batch": forward_batch, "tolerance": TOLERANCE, "models": {}}
    for name, path in models.items():
        result = figures["models"][name] = measure(path, video, args.threads, forward_batch, args.repeats)
        print(f"{name}: {result['windows']} windows, {args.threads} threads, passes of {forward_batch}; eager fp32 (the job's) {result['eager_fp32_windows_per_s']:.0f} windows/s")
        for variant, r in result["variants"].items():
            if "error" in r:
                print(f"  {variant:<28} failed: {r['error']}")
                continue
            verdict = "within" if r["within_tolerance"] else "OUTSIDE"
            print(
                f"  {variant:<28} {r['windows_per_s']:7.0f} windows/s ({r['ratio_to_eager']:.2f}x), prepare {r['prepare_s']:.1f} s, "
                f"max |dp| {r['max_abs_dp']:.1e} ({verdict} {TOLERANCE:g}), {r['decisions_flipped_at_0.5']} decisions flipped at 0.5"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
