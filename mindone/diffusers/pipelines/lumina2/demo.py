"""Generate an image with `Lumina2Pipeline` from the command line.

    python -m mindone.diffusers.pipelines.lumina2.demo --prompt "a cat in a spacesuit" --output cat.png
    mindone-lumina2 --model Alpha-VLLM/Lumina-Image-2.0 --dtype bfloat16 --prompt "..."   # the real model (Ascend)

Without `--model` it runs the small pipeline bundled with the package (`mindone/assets/lumina2-tiny`: tiny random
weights and a local tokenizer, under 1 MB), so it works offline in seconds on CPU; its pictures are noise-like.
`build_tiny_pipeline` is how that folder was made (deterministic, no torch).
"""

import argparse
import os
import sys
import time
from typing import List, Optional

import numpy as np

import mindspore as ms

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY_PIPELINE = os.path.join(_PACKAGE_DIR, "assets", "lumina2-tiny")
DEFAULT_PROMPT = "a cat in a spacesuit, floating above the earth, highly detailed"


def build_tiny_pipeline(save_directory: Optional[str] = None, seed: int = 0):
    """Build the tiny random Lumina2 pipeline bundled as `mindone/assets/lumina2-tiny` (and save it if asked).

    The layout is the real one (Gemma2 text encoder, 16-channel latents, a 4-block VAE so images are 8x the latent
    size, the Lumina-Image-2.0 scheduler), at widths of 8 to 32 so the folder stays small. Weights are drawn from
    `numpy.random.default_rng(seed)` (normal / sqrt(fan_in) for matrices and kernels, ones for norm scales, zeros for
    biases), so the same seed gives the same weights on any machine.
    """
    from transformers import Gemma2Config

    from mindone.diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        Lumina2Pipeline,
        Lumina2Transformer2DModel,
    )
    from mindone.testing import build_gemma_tokenizer
    from mindone.transformers import Gemma2Model

    tokenizer = build_gemma_tokenizer()
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=512,
            sliding_window=64,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    )
    transformer = Lumina2Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=16,
        hidden_size=32,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        norm_eps=1e-5,
        scaling_factor=1.0,
        axes_dim_rope=(8, 4, 4),
        axes_lens=(300, 512, 512),
        cap_feat_dim=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        sample_size=128,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=6.0)

    rng = np.random.default_rng(seed)
    for model in (text_encoder, transformer, vae):
        for name, param in sorted(model.parameters_and_names(), key=lambda item: item[0]):
            shape = tuple(param.shape)
            if len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                value = rng.standard_normal(shape).astype(np.float32) / np.sqrt(fan_in)
            elif name.endswith("bias"):
                value = np.zeros(shape, np.float32)
            else:
                value = np.ones(shape, np.float32)
            param.set_data(ms.Tensor(value.astype(np.float32), param.dtype))
        model.set_train(False)

    pipe = Lumina2Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer
    )
    if save_directory is not None:
        pipe.save_pretrained(save_directory)
    return pipe


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mindone-lumina2",
        description="Generate an image with Lumina-Image-2.0 on MindSpore. Without --model, a tiny bundled pipeline "
        "(random weights, noise-like pictures) runs offline in seconds.",
    )
    parser.add_argument(
        "--model", default=None, help="a Hub repo id or a pipeline folder (default: the bundled tiny one)"
    )
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument(
        "--steps", type=int, default=None, help="denoising steps (default: 30; 4 for the tiny pipeline)"
    )
    parser.add_argument("--height", type=int, default=None, help="multiple of 16 (default: the model's size)")
    parser.add_argument("--width", type=int, default=None, help="multiple of 16 (default: the model's size)")
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--cfg-trunc-ratio", type=float, default=1.0)
    parser.add_argument(
        "--system-prompt",
        default=None,
        help="a system prompt, or a preset of the original code: align, base, aesthetics, real, 4grid, empty",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="lumina2_demo.png", help="where to write the PNG")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default=None, choices=["CPU", "Ascend", "GPU"], help="MindSpore device target")
    parser.add_argument("--graph-mode", action="store_true", help="run under mindspore.GRAPH_MODE")
    parser.add_argument(
        "--async-launch",
        action="store_true",
        help="keep MindSpore's asynchronous operator launch in PyNative on CPU (by default the demo calls "
        "mindspore.runtime.launch_blocking() there: its queue threads spin on CPU cores the kernels need)",
    )
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value <= 0 or value % 16 != 0):
            parser.error(f"--{name} must be a positive multiple of 16, got {value}")
    return args


def launch_blocking_on_cpu() -> None:
    """Synchronous op launch in PyNative on CPU: the same numbers, ~1.9x faster on 2 cores (MindSpore's asynchronous
    launch queue spins on a core; docs/benchmarks.md). Small pipelines like the bundled one run op by op."""
    if ms.get_context("mode") == ms.PYNATIVE_MODE and ms.get_context("device_target") == "CPU":
        ms.runtime.launch_blocking()


def main(argv: Optional[List[str]] = None) -> str:
    """Run the demo; returns the path of the PNG it wrote."""
    args = parse_args(argv)
    context = {"mode": ms.GRAPH_MODE if args.graph_mode else ms.PYNATIVE_MODE}
    if args.device is not None:
        context["device_target"] = args.device
    ms.set_context(**context)
    if not args.async_launch:
        launch_blocking_on_cpu()

    from mindone.diffusers import Lumina2Pipeline

    model = args.model or TINY_PIPELINE
    steps = args.steps or (30 if args.model else 4)
    start = time.perf_counter()
    pipe = Lumina2Pipeline.from_pretrained(model, mindspore_dtype=getattr(ms, args.dtype))
    loaded = time.perf_counter()
    image = pipe(
        args.prompt,
        negative_prompt=args.negative_prompt,
        height=args.height,
        width=args.width,
        num_inference_steps=steps,
        guidance_scale=args.guidance_scale,
        cfg_trunc_ratio=args.cfg_trunc_ratio,
        system_prompt=args.system_prompt,
        generator=np.random.default_rng(args.seed),
    )[0][0]
    done = time.perf_counter()

    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    image.save(output)
    print(
        f"Saved a {image.width}x{image.height} image ({steps} steps, seed {args.seed}) from "
        f"{'the bundled tiny pipeline' if args.model is None else model} to {output} "
        f"(load {loaded - start:.1f}s, generate {done - loaded:.1f}s)"
    )
    return output


def console_main() -> None:
    """The `mindone-lumina2` command: `main` without its return value, which a console script would turn into exit
    status 1 (a non-None `sys.exit` argument is printed as an error)."""
    main()


if __name__ == "__main__":
    main(sys.argv[1:])
