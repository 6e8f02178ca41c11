"""Compare scheduler settings (steps x shift) on one prompt and seed: one PNG per setting, a grid, and the timings.

    python examples/scheduler_sweep.py --model Alpha-VLLM/Lumina-Image-2.0 --dtype bfloat16 --device Ascend \
        --steps 10 20 30 --shifts 3 6 --cfg-trunc-ratio 0.25 --output-dir sweep

The grid has one row per shift and one column per step count. Every image starts from the same noise (the seed), so
differences come from the schedule alone. Without `--model` it uses the small random pipeline bundled with the package
(offline, noise-like images). See docs/guides/schedulers.md.
"""

import argparse
import os
import sys
import time
from typing import List, Optional

import numpy as np
from PIL import Image

import mindspore as ms

from mindone.diffusers.pipelines.lumina2.demo import DEFAULT_PROMPT, TINY_PIPELINE, launch_blocking_on_cpu


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare steps and shift settings of Lumina-Image-2.0's scheduler.")
    parser.add_argument(
        "--model", default=None, help="a Hub repo id or a pipeline folder (default: the bundled tiny one)"
    )
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 30], help="step counts to compare")
    parser.add_argument("--shifts", type=float, nargs="+", default=[3.0, 6.0], help="scheduler shifts to compare")
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--cfg-trunc-ratio", type=float, default=1.0, help="guide only this fraction of the steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="scheduler_sweep")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default=None, choices=["CPU", "Ascend"], help="MindSpore device target")
    args = parser.parse_args(argv)
    if min(args.steps) < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if min(args.shifts) <= 0:
        parser.error(f"--shifts must be > 0, got {args.shifts}")
    return args


def main(argv: Optional[List[str]] = None) -> str:
    """Run the sweep; returns the path of the grid PNG."""
    args = parse_args(argv)
    if args.device is not None:
        ms.set_context(device_target=args.device)  # before loading: the attention picks its kernels then
    launch_blocking_on_cpu()

    from mindone.diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline

    pipe = Lumina2Pipeline.from_pretrained(args.model or TINY_PIPELINE, mindspore_dtype=getattr(ms, args.dtype))
    pipe.set_progress_bar_config(disable=True)
    config = pipe.scheduler.config
    os.makedirs(args.output_dir, exist_ok=True)

    rows = []
    print(f"{'shift':>6} {'steps':>6} {'seconds':>8}")
    for shift in args.shifts:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(config, shift=shift)
        row = []
        for steps in args.steps:
            start = time.perf_counter()
            image = pipe(
                args.prompt,
                num_inference_steps=steps,
                guidance_scale=args.guidance_scale,
                cfg_trunc_ratio=args.cfg_trunc_ratio,
                generator=np.random.default_rng(args.seed),
            )[0][0]
            seconds = time.perf_counter() - start
            image.save(os.path.join(args.output_dir, f"shift{shift:g}_steps{steps}.png"))
            print(f"{shift:6g} {steps:6d} {seconds:8.2f}")
            row.append(image)
        rows.append(row)

    width, height = rows[0][0].size
    grid = Image.new("RGB", (width * len(args.steps), height * len(args.shifts)))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            grid.paste(image, (c * width, r * height))
    path = os.path.join(args.output_dir, "grid.png")
    grid.save(path)
    print(f"Saved {len(args.shifts) * len(args.steps)} images and {path} (rows: shift {args.shifts}, columns: steps)")
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
