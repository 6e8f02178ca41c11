"""Generate images with one or more LoRA adapters on Lumina-Image-2.0 (MindSpore).

    # a LoRA from the Hub (or a folder, or a .safetensors file; diffusers/PEFT or original / ComfyUI format)
    python examples/lora_generate.py --model Alpha-VLLM/Lumina-Image-2.0 --dtype bfloat16 --device Ascend \
        --lora some-user/some-lumina2-lora --scale 0.8 --prompt "a cat in a spacesuit" --output cat_lora.png

    # two adapters with weights, fused into the weights, plus the image without LoRA for comparison
    python examples/lora_generate.py --lora style_a.safetensors --lora style_b.safetensors \
        --adapter-weights 0.7 0.4 --fuse --compare

Without `--model` it uses the small random pipeline bundled with the package (offline, noise-like images). See
`python examples/lora_generate.py --help` and docs/guides/lora.md.
"""

import argparse
import os
import sys
import time
from typing import List, Optional

import numpy as np

import mindspore as ms

from mindone.diffusers.pipelines.lumina2.demo import DEFAULT_PROMPT, TINY_PIPELINE, launch_blocking_on_cpu


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generate images with LoRA adapters on Lumina-Image-2.0.")
    parser.add_argument(
        "--model", default=None, help="a Hub repo id or a pipeline folder (default: the bundled tiny one)"
    )
    parser.add_argument(
        "--lora", action="append", required=True, help="a LoRA: Hub repo id, folder or .safetensors file (repeatable)"
    )
    parser.add_argument("--weight-name", default=None, help="the LoRA file inside a repo or folder with several")
    parser.add_argument(
        "--adapter-weights", type=float, nargs="+", default=None, help="one weight per --lora (default: 1.0 each)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="overall LoRA strength of this run")
    parser.add_argument("--fuse", action="store_true", help="fuse the adapters into the weights before generating")
    parser.add_argument("--compare", action="store_true", help="also save the image without LoRA (<output>_base.png)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: 30; 4 for the tiny pipeline)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="lumina2_lora.png", help="where to write the PNG")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default=None, choices=["CPU", "Ascend"], help="MindSpore device target")
    args = parser.parse_args(argv)
    if args.adapter_weights is not None and len(args.adapter_weights) != len(args.lora):
        parser.error(f"--adapter-weights needs one value per --lora ({len(args.lora)}), got {args.adapter_weights}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    return args


def main(argv: Optional[List[str]] = None) -> List[str]:
    """Run the script; returns the paths of the PNGs it wrote."""
    args = parse_args(argv)
    if args.device is not None:
        ms.set_context(device_target=args.device)  # before loading: the attention picks its kernels then
    launch_blocking_on_cpu()

    from mindone.diffusers import Lumina2Pipeline

    model = args.model or TINY_PIPELINE
    steps = args.steps or (30 if args.model else 4)
    pipe = Lumina2Pipeline.from_pretrained(model, mindspore_dtype=getattr(ms, args.dtype))

    def generate():
        return pipe(
            args.prompt, num_inference_steps=steps, generator=np.random.default_rng(args.seed),
            attention_kwargs=None if args.fuse else {"scale": args.scale},
        )[0][0]  # fmt: skip

    written = []
    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    if args.compare:
        base = generate()
        base_path = os.path.splitext(output)[0] + "_base.png"
        base.save(base_path)
        written.append(base_path)

    names = [f"lora_{i}" for i in range(len(args.lora))]
    for name, lora in zip(names, args.lora):
        pipe.load_lora_weights(lora, adapter_name=name, weight_name=args.weight_name)
    pipe.set_adapters(names, adapter_weights=args.adapter_weights)
    if args.fuse:
        pipe.fuse_lora(lora_scale=args.scale)

    start = time.perf_counter()
    image = generate()
    seconds = time.perf_counter() - start
    image.save(output)
    written.append(output)
    print(
        f"Saved {output} ({image.width}x{image.height}, {steps} steps, {len(names)} LoRA(s) "
        f"{'fused' if args.fuse else 'at run time'}, scale {args.scale}, {seconds:.1f}s)"
    )
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
