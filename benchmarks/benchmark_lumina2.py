#!/usr/bin/env python
"""Side-by-side benchmark of the Lumina-Image-2.0 stack: mindone (MindSpore, CPU) against diffusers / transformers
(torch, CPU), float32, with identical random weights.

Every measurement runs in its own child process (one framework, one model, one mode), so the peak resident memory of
that process belongs to that side alone; the parent only spawns workers, compares their outputs and writes the table.
Weights are the same on both sides: each side fills its parameters, key by key through the checkpoint (state-dict)
names, from a NumPy generator seeded by the key, so nothing is copied across processes.

Sections (`--sections`, comma separated; default: all):

- `matmul`            the machine's fp32 matmul limit: one large GEMM in torch and in MindSpore (its fastest primitive)
- `transformer`       Lumina2Transformer2DModel at real widths (hidden 2304, 24/8 heads, cap_feat_dim 2304, axes
                      (32, 32, 32)) with `--layers` joint layers + 2+2 refiners, 64x64 latents (512x512 images, 1024
                      image tokens), 128 caption tokens, batch 2 (CFG); ours in each of `--ms-modes`
- `transformer_full`  the 26-layer transformer, one forward (sides run one after the other: ~10 GB each in float32)
- `vae`               AutoencoderKL.decode at 512x512 with the FLUX widths (16 latent channels)
- `gemma`             Gemma2Model at the gemma-2-2b widths, 256 tokens, `output_hidden_states=True` (as the pipeline)
- `load`              `from_pretrained` of a real-width transformer checkpoint (`--load-layers` joint layers): time and
                      peak memory against the size of the weights

Usage:
    python benchmarks/benchmark_lumina2.py                       # everything (about 1-2 h on 2 cores)
    python benchmarks/benchmark_lumina2.py --sections matmul,transformer --repeats 5
    python benchmarks/benchmark_lumina2.py --quick --output /tmp/bench.md   # tiny sizes, a smoke test

Timings are wall-clock seconds of one call (outputs synchronised to host memory), min and median over `--repeats`,
after one untimed warm-up call (which also compiles in graph/jit modes). Memory is the peak resident set of the worker
process (VmHWM): `peak` over the whole process, `fwd +` the growth during the calls over the resident set after the
model was built.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO_ROOT, "docs", "benchmarks.md")
RESULTS_BEGIN = "<!-- benchmark-results:begin (written by benchmarks/benchmark_lumina2.py) -->"
RESULTS_END = "<!-- benchmark-results:end -->"
ALL_SECTIONS = ("matmul", "transformer", "transformer_full", "vae", "gemma", "load")
MS_MODES = ("pynative", "pynative-blocking", "graph", "jit")
# a mode may end in `+avx2`: the worker starts with ONEDNN_MAX_CPU_ISA=AVX2, where oneDNN's NCHW convolution is its
# GEMM one and the VAE keeps MindSpore's Conv2D kernel (`cpu_layers.native_conv_is_fast`); or in `+eager`: PyNative
# calls stay op by op (the models' compiled CPU path for large inputs switched off)
MODE_SUFFIXES = ("", "+avx2", "+eager")

# ----------------------------------------------------------------------------------------------------------------------
# configurations

TRANSFORMER_REAL = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    hidden_size=2304,
    num_layers=26,
    num_refiner_layers=2,
    num_attention_heads=24,
    num_kv_heads=8,
    multiple_of=256,
    ffn_dim_multiplier=None,
    norm_eps=1e-5,
    scaling_factor=1.0,
    axes_dim_rope=(32, 32, 32),
    axes_lens=(300, 512, 512),
    cap_feat_dim=2304,
)
TRANSFORMER_TINY = dict(
    TRANSFORMER_REAL,
    in_channels=4,
    hidden_size=64,
    num_layers=1,
    num_refiner_layers=1,
    num_attention_heads=4,
    num_kv_heads=2,
    multiple_of=16,
    axes_dim_rope=(4, 6, 6),
    axes_lens=(32, 32, 32),
    cap_feat_dim=32,
)
# FLUX.1 VAE (black-forest-labs/FLUX.1-dev, vae/config.json), also Lumina-Image-2.0's
VAE_FLUX = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=16,
    norm_num_groups=32,
    sample_size=1024,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    force_upcast=True,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=True,
)
VAE_TINY = dict(
    VAE_FLUX,
    block_out_channels=(8, 16),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
)
# google/gemma-2-2b (Lumina-Image-2.0's text encoder)
GEMMA_2B = dict(
    vocab_size=256000,
    hidden_size=2304,
    intermediate_size=9216,
    num_hidden_layers=26,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=256,
    hidden_activation="gelu_pytorch_tanh",
    max_position_embeddings=8192,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    attn_logit_softcapping=50.0,
    final_logit_softcapping=30.0,
    query_pre_attn_scalar=256,
    sliding_window=4096,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=2,
)
GEMMA_TINY = dict(
    GEMMA_2B,
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    query_pre_attn_scalar=8,
    sliding_window=8,
)


def sizes(quick: bool, args) -> dict:
    """Problem sizes of every section (the `--quick` ones are tiny: a smoke test, not a measurement)."""
    if quick:
        return dict(
            transformer=dict(config=dict(TRANSFORMER_TINY), batch=2, latent=8, caption=8, caption_valid=(8, 5)),
            transformer_full=dict(
                config=dict(TRANSFORMER_TINY, num_layers=2), batch=1, latent=8, caption=8, caption_valid=(8,)
            ),
            vae=dict(config=dict(VAE_TINY), batch=1, latent=8),
            gemma=dict(config=dict(GEMMA_TINY), batch=1, tokens=16),
            load=dict(config=dict(TRANSFORMER_TINY)),
            matmul=dict(n=256),
        )
    return dict(
        transformer=dict(
            config=dict(TRANSFORMER_REAL, num_layers=args.layers),
            batch=2,
            latent=64,
            caption=128,
            caption_valid=tuple(args.caption_valid),
        ),
        transformer_full=dict(
            config=dict(TRANSFORMER_REAL), batch=2, latent=64, caption=128, caption_valid=tuple(args.caption_valid)
        ),
        vae=dict(config=dict(VAE_FLUX), batch=1, latent=64),
        gemma=dict(config=dict(GEMMA_2B, num_hidden_layers=args.gemma_layers), batch=1, tokens=256),
        load=dict(config=dict(TRANSFORMER_REAL, num_layers=args.load_layers)),
        matmul=dict(n=4096),
    )


# ----------------------------------------------------------------------------------------------------------------------
# deterministic weights and inputs, identical in both frameworks


def key_array(key: str, shape, seed: int = 0) -> np.ndarray:
    """A float32 array for the checkpoint key `key`: uniform with the variance of a fan-in init for matrices / convs,
    `1 + small noise` for 1-D weights (norm scales), small noise for biases and other vectors."""
    rng = np.random.default_rng(zlib.crc32(key.encode()) ^ seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        bound = float(np.sqrt(3.0 / fan_in))
        out = rng.random(shape, dtype=np.float32)
        out *= 2 * bound
        out -= bound
        return out
    noise = (rng.random(shape, dtype=np.float32) - 0.5) * 0.1
    return noise + 1.0 if key.endswith("weight") else noise


def caption_lengths(spec) -> np.ndarray:
    """Valid caption tokens per sample: `caption_valid` (clipped to the padded length), full for samples beyond it."""
    b, cap = spec["batch"], spec["caption"]
    valid = [min(int(v), cap) for v in spec["caption_valid"]][:b]
    return np.asarray(valid + [cap] * (b - len(valid)))


def transformer_inputs(spec):
    cfg = spec["config"]
    rng = np.random.default_rng(1)
    b, n, cap = spec["batch"], spec["latent"], spec["caption"]
    x = rng.standard_normal((b, cfg["in_channels"], n, n), dtype=np.float32)
    t = rng.random(b, dtype=np.float32)
    e = rng.standard_normal((b, cap, cfg["cap_feat_dim"]), dtype=np.float32)
    mask = np.arange(cap)[None, :] < caption_lengths(spec)[:, None]
    return x, t, e, mask


def transformer_flops(spec) -> float:
    """2 x multiply-adds of one forward: every linear layer and the two attention matmuls, at the padded lengths the
    model computes with (context refiner: the padded caption; joint blocks: longest caption + image tokens)."""
    cfg = spec["config"]
    d, heads, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_kv_heads"]
    hd = d // heads
    m = cfg["multiple_of"]
    ffn = m * ((4 * d + m - 1) // m)
    b, n, cap, p = spec["batch"], spec["latent"], spec["caption"], cfg["patch_size"]
    img = (n // p) ** 2
    joint = img + int(caption_lengths(spec).max())
    t_dim = min(d, 1024)
    patch = p * p * cfg["in_channels"]

    def block(seq, modulation):
        linear = b * seq * (2 * d * d + 2 * d * kv * hd + 3 * d * ffn)
        attention = b * heads * 2 * seq * seq * hd
        mod = b * t_dim * 4 * d if modulation else 0
        return 2 * (linear + attention + mod)

    r = cfg["num_refiner_layers"]
    total = r * block(cap, False) + r * block(img, True) + cfg["num_layers"] * block(joint, True)
    total += 2 * b * (img * patch * d + cap * cfg["cap_feat_dim"] * d + joint * d * patch)
    return float(total)


# ----------------------------------------------------------------------------------------------------------------------
# worker side: memory and timing helpers


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_gib() -> float:
    return _status_kib("VmRSS") / 2**20


def peak_gib() -> float:
    """Peak resident set since the last `reset_peak()` (VmHWM; ru_maxrss where /proc is unavailable)."""
    kib = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: `5` to /proc/self/clear_refs), so a later peak belongs to what ran since."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def time_calls(fn, repeats: int, warmup: int = 1):
    """Run `fn` `warmup` untimed times then `repeats` timed times; returns (first-call seconds, timings, output)."""
    first = None
    out = None
    for i in range(warmup):
        t0 = time.perf_counter()
        out = fn()
        if i == 0:
            first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return first, times, out


def fill_torch(module, seed=0):
    import torch

    with torch.no_grad():
        for key, tensor in module.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                tensor.copy_(torch.from_numpy(key_array(key, tensor.shape, seed)))


def fill_ms(model, seed=0):
    import mindspore as ms

    for key, param in model.parameters_and_names():
        arr = key_array(key, param.shape, seed)
        param.set_data(ms.Tensor(arr, dtype=param.dtype))


# ----------------------------------------------------------------------------------------------------------------------
# worker side: one task per process


def _setup_ms(mode: str):
    import mindspore as ms

    ms.set_context(device_target="CPU")
    if mode == "pynative-blocking":
        ms.runtime.launch_blocking()
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    return ms


def _op_by_op(task):
    """`+eager` modes: the compiled PyNative CPU path of large inputs switched off in the section's model (only its
    module is imported: Gemma2's imports `transformers`, which would bring torch into the other workers)."""
    if not task.get("eager"):
        return
    if task["section"] == "vae":
        from mindone.diffusers.models import cpu_layers

        cpu_layers.WHOLE_GRAPH_ELEMENTS = float("inf")
    elif task["section"] == "gemma":
        from mindone.transformers.models.gemma2 import modeling_gemma2

        modeling_gemma2.COMPILE_ON_CPU_ELEMENTS = float("inf")
    else:
        from mindone.diffusers.models.transformers import transformer_lumina2

        transformer_lumina2.COMPILE_ON_CPU_ELEMENTS = float("inf")


def _setup_torch():
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def _jit_model(ms, model, mode):
    if mode == "jit":
        model.construct = ms.jit(model.construct)
    return model


def worker_matmul(task):
    n = task["spec"]["n"]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    results = {}
    if task["side"] == "torch":
        torch = _setup_torch()
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        results["torch.matmul"] = time_calls(lambda: torch.matmul(ta, tb), task["repeats"])[1]
    elif task["side"] == "numpy":
        results["numpy.matmul (OpenBLAS)"] = time_calls(lambda: a @ b, task["repeats"])[1]
    else:
        ms = _setup_ms("pynative-blocking")
        from mindspore import mint, ops

        ma, mb = ms.Tensor(a), ms.Tensor(b)
        matmul = ops.MatMul()
        results["ops.MatMul"] = time_calls(lambda: matmul(ma, mb).asnumpy(), task["repeats"])[1]
        results["mint.matmul"] = time_calls(lambda: mint.matmul(ma, mb).asnumpy(), task["repeats"])[1]
        # mint.nn.functional.linear (the Dense kernel) computes x @ w.T
        results["mint.nn.functional.linear"] = time_calls(
            lambda: mint.nn.functional.linear(ma, mb).asnumpy(), task["repeats"]
        )[1]
    flops = 2.0 * n**3
    return {"flops": flops, "kernels": {k: {"times": v, "gflops": flops / min(v) / 1e9} for k, v in results.items()}}


def worker_transformer(task):
    spec = task["spec"]
    x, t, e, mask = transformer_inputs(spec)
    base = rss_gib()
    if task["side"] == "torch":
        torch = _setup_torch()
        from diffusers import Lumina2Transformer2DModel

        model = Lumina2Transformer2DModel(**spec["config"]).eval()
        fill_torch(model)
        args = [torch.from_numpy(a) for a in (x, t, e, mask)]

        def run():
            with torch.no_grad():
                return model(*args, return_dict=False)[0].numpy()

    else:
        ms = _setup_ms(task["mode"])
        _op_by_op(task)
        from mindspore.nn.utils import no_init_parameters

        from mindone.diffusers import Lumina2Transformer2DModel

        with no_init_parameters():
            model = Lumina2Transformer2DModel(**spec["config"])
        fill_ms(model)
        model.set_train(False)
        _jit_model(ms, model, task["mode"])
        args = [ms.Tensor(a) for a in (x, t, e, mask)]

        def run():
            return model(*args)[0].asnumpy()

    return _measure(task, run, base)


def worker_vae(task):
    spec = task["spec"]
    cfg = spec["config"]
    rng = np.random.default_rng(2)
    z = rng.standard_normal((spec["batch"], cfg["latent_channels"], spec["latent"], spec["latent"]), dtype=np.float32)
    base = rss_gib()
    if task["side"] == "torch":
        torch = _setup_torch()
        from diffusers import AutoencoderKL

        model = AutoencoderKL(**cfg).eval()
        fill_torch(model)
        zt = torch.from_numpy(z)

        def run():
            with torch.no_grad():
                return model.decode(zt, return_dict=False)[0].numpy()

    else:
        ms = _setup_ms(task["mode"])
        _op_by_op(task)
        from mindspore.nn.utils import no_init_parameters

        from mindone.diffusers import AutoencoderKL

        with no_init_parameters():
            model = AutoencoderKL(**cfg)
        fill_ms(model)
        model.set_train(False)
        if task["mode"] == "jit":
            model.decoder.construct = ms.jit(model.decoder.construct)
        zm = ms.Tensor(z)

        def run():
            return model.decode(zm, return_dict=False)[0].asnumpy()

    return _measure(task, run, base)


def worker_gemma(task):
    spec = task["spec"]
    rng = np.random.default_rng(3)
    ids = rng.integers(3, spec["config"]["vocab_size"], size=(spec["batch"], spec["tokens"]), dtype=np.int64)
    ids[:, 0] = 2  # <bos>
    attn = np.ones_like(ids)
    base = rss_gib()
    if task["side"] == "torch":
        torch = _setup_torch()
        from transformers import Gemma2Config, Gemma2Model

        config = Gemma2Config(**spec["config"])
        config._attn_implementation = "eager"
        model = Gemma2Model(config).eval()
        fill_torch(model)
        ti, ta = torch.from_numpy(ids), torch.from_numpy(attn)

        def run():
            with torch.no_grad():
                out = model(input_ids=ti, attention_mask=ta, output_hidden_states=True)
                return out.hidden_states[-2].numpy()

    else:
        ms = _setup_ms(task["mode"])
        _op_by_op(task)
        from transformers import Gemma2Config

        from mindspore.nn.utils import no_init_parameters

        from mindone.transformers import Gemma2Model

        with no_init_parameters():
            model = Gemma2Model(Gemma2Config(**spec["config"]))
        fill_ms(model)
        model.set_train(False)
        _jit_model(ms, model, task["mode"])
        mi, ma = ms.Tensor(ids.astype(np.int32)), ms.Tensor(attn.astype(np.int32))

        def run():
            return (
                model(input_ids=mi, attention_mask=ma, output_hidden_states=True, return_dict=True)
                .hidden_states[-2]
                .asnumpy()
            )

    return _measure(task, run, base)


def worker_write_checkpoint(task):
    """Write a diffusers-format transformer folder (sharded safetensors, random weights) without torch."""
    from safetensors.numpy import save_file

    from mindspore.nn.utils import no_init_parameters

    from mindone.diffusers import Lumina2Transformer2DModel

    folder, cfg = task["folder"], task["spec"]["config"]
    with no_init_parameters():
        model = Lumina2Transformer2DModel(**cfg)
    model.save_config(folder)
    shapes = [(k, tuple(p.shape)) for k, p in model.parameters_and_names()]
    del model
    shard_bytes = 2 * 2**30
    shards, current, size = [[]], 0, 0
    for key, shape in shapes:
        nbytes = 4 * int(np.prod(shape))
        if shards[-1] and current + nbytes > shard_bytes:
            shards.append([])
            current = 0
        shards[-1].append((key, shape))
        current += nbytes
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: key_array(k, s) for k, s in shard}, os.path.join(folder, name), metadata={"format": "pt"})
        weight_map.update({k: name for k, _ in shard})
    with open(os.path.join(folder, "diffusion_pytorch_model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": size}, "weight_map": weight_map}, f, indent=2)
    return {"weights_gib": size / 2**30}


def worker_load(task):
    folder = task["folder"]
    if task["side"] == "torch":
        _setup_torch()
        from diffusers import Lumina2Transformer2DModel
    else:
        _setup_ms("pynative")
        from mindone.diffusers import Lumina2Transformer2DModel
    # page cache warm for both sides: read the files once before timing
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            while f.read(1 << 26):
                pass
    base = rss_gib()
    reset_peak()
    t0 = time.perf_counter()
    model = Lumina2Transformer2DModel.from_pretrained(folder)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "base_gib": base,
        "peak_gib": peak_gib(),
        "after_gib": rss_gib(),
        "params": sum(int(np.prod(p.shape)) for _, p in _named_params(model, task["side"])),
    }


def _named_params(model, side):
    return model.named_parameters() if side == "torch" else model.parameters_and_names()


def _measure(task, run, base):
    built = rss_gib()
    lifetime_before = peak_gib()
    reset_peak()
    first, times, out = time_calls(run, task["repeats"], warmup=task.get("warmup", 1))
    result = {
        "times": times,
        "first": first,
        "base_gib": base,
        "built_gib": built,
        "peak_gib": max(peak_gib(), lifetime_before),
        "forward_peak_gib": peak_gib(),
        "torch_imported": "torch" in sys.modules,
    }
    result["forward_growth_gib"] = result["forward_peak_gib"] - built
    if task.get("output"):
        np.save(task["output"], np.asarray(out, dtype=np.float32))
    return result


WORKERS = {
    "matmul": worker_matmul,
    "transformer": worker_transformer,
    "transformer_full": worker_transformer,
    "vae": worker_vae,
    "gemma": worker_gemma,
    "write_checkpoint": worker_write_checkpoint,
    "load": worker_load,
}


def worker_main(task_json: str) -> None:
    task = json.loads(task_json)
    mode, _, suffix = task.get("mode", "").partition("+")
    task["mode"], task["eager"] = mode, suffix == "eager"  # `+avx2` only set the environment (run_worker)
    sys.path.insert(0, REPO_ROOT)
    result = WORKERS[task["section"]](task)
    result["lifetime_peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------------------------------------
# parent side


def run_worker(task: dict, timeout: float, log) -> dict:
    env = dict(os.environ)
    env.setdefault("GLOG_v", "3")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if task.get("mode", "").endswith("+avx2"):
        env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(task)]
    label = f"{task['section']}:{task.get('side')}:{task.get('mode', '')}"
    log(f"  running {label} ...")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  {label}: timed out after {timeout:.0f} s")
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            log(f"  {label}: done in {time.perf_counter() - t0:.1f} s")
            return result
    tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
    log(f"  {label}: failed (exit {proc.returncode})\n{tail}")
    return {"error": f"exit {proc.returncode}: {tail.splitlines()[-1] if tail else ''}"}


def rel_l2(a: np.ndarray, e: np.ndarray) -> float:
    a, e = a.astype(np.float64), e.astype(np.float64)
    if a.shape != e.shape:
        return float("nan")
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30))


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except OSError:
        pass
    versions = {}
    for name in ("mindspore", "torch", "diffusers", "transformers", "numpy"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is reported as such
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem,
        "python": platform.python_version(),
        "versions": versions,
        "load": os.getloadavg(),
    }


def fmt_t(seconds: float) -> str:
    return f"{seconds:.3g}" if seconds < 100 else f"{seconds:.0f}"


def fmt_s(times):
    if not times:
        return "-"
    return f"{fmt_t(min(times))} / {fmt_t(float(np.median(times)))}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


class Runner:
    def __init__(self, args):
        self.args = args
        self.sizes = sizes(args.quick, args)
        self.rows = []  # (section, variant, time, first, mem, growth, ratio_time, ratio_mem, extra)
        self.notes = []
        self.matmul_peak = {}
        self.tmp = tempfile.mkdtemp(prefix="bench_lumina2_")

    def log(self, msg):
        print(msg, flush=True)

    def task(self, section, side, mode="", **kw):
        spec_key = section
        t = {
            "section": section,
            "side": side,
            "mode": mode,
            "repeats": self.args.repeats,
            "spec": self.sizes[spec_key],
        }
        t.update(kw)
        return t

    def forward_section(self, section, title, flops=None, modes=None, repeats=None):
        modes = modes if modes is not None else self.args.ms_modes
        repeats = repeats or self.args.repeats
        out_torch = os.path.join(self.tmp, f"{section}_torch.npy")
        ref = run_worker(self.task(section, "torch", repeats=repeats, output=out_torch), self.args.timeout, self.log)
        results = [("torch (diffusers)" if section != "gemma" else "torch (transformers)", ref, None)]
        for mode in modes:
            out = os.path.join(self.tmp, f"{section}_{mode}.npy")
            res = run_worker(self.task(section, "ms", mode, repeats=repeats, output=out), self.args.timeout, self.log)
            err = None
            if "error" not in res and "error" not in ref:
                err = rel_l2(np.load(out), np.load(out_torch))
            results.append((f"mindone {mode}", res, err))
        for name, res, err in results:
            if "error" in res:
                self.rows.append((title, name, "error", "-", "-", "-", "-", "-", res["error"][:80]))
                continue
            t_ratio = m_ratio = "-"
            if res is not ref and "error" not in ref:
                t_ratio = ratio(min(res["times"]), min(ref["times"]))
                m_ratio = ratio(res["peak_gib"], ref["peak_gib"])
            extra = []
            if err is not None:
                extra.append(f"rel. L2 vs torch {err:.1e}")
            if flops:
                gf = flops / min(res["times"]) / 1e9
                extra.append(f"{gf:.0f} GFLOP/s")
                limit = self.matmul_peak.get("torch" if res is ref else "ms")
                if limit:
                    extra.append(f"{100 * gf / limit:.0f}% of {'torch' if res is ref else 'MindSpore'} matmul peak")
            if res.get("torch_imported") and res is not ref:
                extra.append("torch imported in process")
            self.rows.append(
                (
                    title,
                    name,
                    fmt_s(res["times"]),
                    fmt_t(res["first"]),
                    f"{res['peak_gib']:.2f}",
                    f"{res['forward_growth_gib']:.2f}",
                    t_ratio,
                    m_ratio,
                    "; ".join(extra),
                )
            )

    def run(self):
        args = self.args
        secs = args.sections
        self.info = machine_info()
        self.log(f"machine: {self.info['cpu']}, {self.info['cores']} cores, load {self.info['load']}")
        if "matmul" in secs or "transformer" in secs or "transformer_full" in secs:
            self.section_matmul()
        if "transformer" in secs:
            spec = self.sizes["transformer"]
            cfg = spec["config"]
            title = (
                f"transformer {cfg['num_layers']}+{cfg['num_refiner_layers']}+{cfg['num_refiner_layers']} layers, "
                f"B={spec['batch']}, {spec['latent']}x{spec['latent']} latents, {spec['caption']} caption tokens"
            )
            self.forward_section("transformer", title, flops=transformer_flops(spec))
        if "transformer_full" in secs:
            spec = self.sizes["transformer_full"]
            cfg = spec["config"]
            title = (
                f"transformer full ({cfg['num_layers']} layers), B={spec['batch']}, "
                f"{spec['latent']}x{spec['latent']} latents, {spec['caption']} caption tokens"
            )
            self.forward_section(
                "transformer_full",
                title,
                flops=transformer_flops(spec),
                modes=args.full_ms_modes,
                repeats=args.full_repeats,
            )
        if "vae" in secs:
            spec = self.sizes["vae"]
            title = (
                f"VAE decode {spec['latent'] * 8}x{spec['latent'] * 8} (FLUX widths)"
                if not args.quick
                else "VAE decode (tiny)"
            )
            self.forward_section("vae", title, modes=args.vae_ms_modes)
        if "gemma" in secs:
            spec = self.sizes["gemma"]
            title = f"Gemma2 encoder ({spec['config']['num_hidden_layers']} layers), {spec['tokens']} tokens"
            self.forward_section("gemma", title, modes=args.gemma_ms_modes, repeats=args.gemma_repeats)
        if "load" in secs:
            self.section_load()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.info["load_end"] = os.getloadavg()
        self.write()

    def section_matmul(self):
        n = self.sizes["matmul"]["n"]
        rows = []
        for side in ("torch", "ms", "numpy"):
            res = run_worker(self.task("matmul", side, repeats=max(3, self.args.repeats)), self.args.timeout, self.log)
            if "error" in res:
                rows.append((side, None, res["error"]))
                continue
            for kernel, r in res["kernels"].items():
                rows.append((side, kernel, r))
        best = {}
        for side, kernel, r in rows:
            if kernel is None:
                continue
            best[side] = max(best.get(side, 0.0), r["gflops"])
        self.matmul_peak = best
        for side, kernel, r in rows:
            if kernel is None:
                self.rows.append((f"fp32 matmul {n}x{n}x{n}", side, "error", "-", "-", "-", "-", "-", r[:80]))
                continue
            self.rows.append(
                (
                    f"fp32 matmul {n}x{n}x{n}",
                    f"{side}: {kernel}",
                    fmt_s(r["times"]),
                    "-",
                    "-",
                    "-",
                    ratio(min(r["times"]), 2.0 * n**3 / best["torch"] / 1e9) if "torch" in best else "-",
                    "-",
                    f"{r['gflops']:.0f} GFLOP/s",
                )
            )

    def section_load(self):
        spec = self.sizes["load"]
        folder = os.path.join(self.tmp, "checkpoint")
        os.makedirs(folder, exist_ok=True)
        wrote = run_worker(
            {"section": "write_checkpoint", "side": "ms", "folder": folder, "spec": spec}, self.args.timeout, self.log
        )
        title = f"from_pretrained, transformer with {spec['config']['num_layers']} layers"
        if "error" in wrote:
            self.rows.append((title, "checkpoint", "error", "-", "-", "-", "-", "-", wrote["error"][:80]))
            return
        weights = wrote["weights_gib"]
        title += f" ({weights:.2f} GiB fp32)"
        res = {}
        for side in ("torch", "ms"):
            runs = [
                run_worker({"section": "load", "side": side, "folder": folder}, self.args.timeout, self.log)
                for _ in range(max(1, self.args.load_repeats))
            ]
            ok = [r for r in runs if "error" not in r]
            res[side] = ok[0] if ok else runs[0]
            if ok:
                res[side] = dict(ok[0], times=[r["seconds"] for r in ok], peak_gib=max(r["peak_gib"] for r in ok))
        shutil.rmtree(folder, ignore_errors=True)
        for side, name in (("torch", "torch (diffusers)"), ("ms", "mindone")):
            r = res[side]
            if "error" in r:
                self.rows.append((title, name, "error", "-", "-", "-", "-", "-", r["error"][:80]))
                continue
            growth = r["peak_gib"] - r["base_gib"]
            t_ratio = m_ratio = "-"
            if side == "ms" and "error" not in res["torch"]:
                t_ratio = ratio(min(r["times"]), min(res["torch"]["times"]))
                m_ratio = ratio(r["peak_gib"], res["torch"]["peak_gib"])
            self.rows.append(
                (
                    title,
                    name,
                    fmt_s(r["times"]),
                    "-",
                    f"{r['peak_gib']:.2f}",
                    f"{growth:.2f}",
                    t_ratio,
                    m_ratio,
                    f"load peak growth = {growth / weights:.2f}x the weights"
                    + (
                        "; weights memory-mapped by safetensors, read from disk when first used (not measured here)"
                        if side == "torch"
                        else "; weights read into memory"
                    ),
                )
            )

    def table(self):
        head = (
            "| section | variant | time min / median (s) | first call (s) | peak RSS (GiB) | growth (GiB) | "
            "time ours/torch | peak ours/torch | notes |"
        )
        lines = [head, "|" + "---|" * 9]
        for row in self.rows:
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
        return "\n".join(lines)

    def write(self):
        info = self.info
        v = info["versions"]
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        cmd = "python benchmarks/benchmark_lumina2.py " + " ".join(self.args.argv)
        block = [
            RESULTS_BEGIN,
            f"Run {stamp} on {info['cpu']}, {info['cores']} cores, {info['mem_gib']:.0f} GiB RAM; "
            f"load average {info['load'][0]:.1f} at the start and {info['load_end'][0]:.1f} at the end; "
            f"Python {info['python']}, MindSpore {v['mindspore']}, torch {v['torch']}, diffusers {v['diffusers']}, "
            f"transformers {v['transformers']}, NumPy {v['numpy']}. Command: `{cmd.strip()}`"
            + (" (**quick mode: tiny sizes, not a measurement**)" if self.args.quick else "")
            + ".",
            "",
            "Times: one call, min / median over the repeats after an untimed warm-up (the first call is listed "
            "separately: it includes graph compilation). `peak RSS`: the worker process's peak resident memory; "
            "`growth`: its growth during the calls over the built model (for loading: over the process before "
            "`from_pretrained`). Ratios are ours / torch (below 1 is better for us).",
            "",
            self.table(),
            RESULTS_END,
        ]
        text = "\n".join(block)
        path = self.args.output
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.isfile(path):
            with open(path) as f:
                current = f.read()
            if RESULTS_BEGIN in current and RESULTS_END in current:
                pre, rest = current.split(RESULTS_BEGIN, 1)
                post = rest.split(RESULTS_END, 1)[1]
                current = pre + text + post
            else:
                current = current.rstrip() + "\n\n## Results\n\n" + text + "\n"
        else:
            current = "# Benchmarks\n\n## Results\n\n" + text + "\n"
        with open(path, "w") as f:
            f.write(current)
        self.log("\n" + self.table())
        self.log(f"\nwritten to {path}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sections",
        default=",".join(ALL_SECTIONS),
        help=f"comma-separated subset of {', '.join(ALL_SECTIONS)} (default: all)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (default 3)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script, not a measurement")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="markdown file whose results block is (re)written")
    p.add_argument("--layers", type=int, default=2, help="joint layers of the `transformer` section (default 2)")
    p.add_argument(
        "--caption-valid",
        type=int,
        nargs="+",
        default=[128, 96],
        help="valid caption tokens per sample of the `transformer` section (default 128 96: CFG with a "
        "shorter negative prompt)",
    )
    p.add_argument(
        "--ms-modes",
        default="pynative,pynative-blocking,graph,jit,jit+avx2,pynative+eager,pynative-blocking+eager",
        help=f"MindSpore modes of the `transformer` section, from {', '.join(MS_MODES)}",
    )
    p.add_argument(
        "--full-ms-modes", default="pynative,jit", help="MindSpore modes of `transformer_full` (default pynative,jit)"
    )
    p.add_argument(
        "--full-repeats",
        type=int,
        default=3,
        help="timed calls of `transformer_full` (default 3: one call of the 26-layer model varied by up to 6%% here, "
        "more than the modes differ)",
    )
    p.add_argument(
        "--vae-ms-modes",
        default="pynative,jit,pynative+avx2,pynative-blocking+eager",
        help="MindSpore modes of `vae` (`+avx2`: the worker runs with ONEDNN_MAX_CPU_ISA=AVX2)",
    )
    p.add_argument(
        "--gemma-ms-modes",
        default="pynative,jit,pynative+eager,pynative-blocking+eager",
        help="MindSpore modes of `gemma`",
    )
    p.add_argument("--gemma-layers", type=int, default=26, help="Gemma2 layers (default 26, the real count)")
    p.add_argument("--gemma-repeats", type=int, default=2, help="timed calls of `gemma` (default 2)")
    p.add_argument("--load-layers", type=int, default=26, help="joint layers of the `load` checkpoint (default 26)")
    p.add_argument("--load-repeats", type=int, default=2, help="from_pretrained runs per side (default 2)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per worker process")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    if args._worker:
        return args
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(ALL_SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; choose from {', '.join(ALL_SECTIONS)}")
    for name in ("ms_modes", "full_ms_modes", "vae_ms_modes", "gemma_ms_modes"):
        modes = [m.strip() for m in getattr(args, name).split(",") if m.strip()]
        bad = sorted(m for m in modes if not any(m == base + sfx for base in MS_MODES for sfx in MODE_SUFFIXES))
        if bad:
            p.error(
                f"--{name.replace('_', '-')}: unknown modes {bad}; choose from {', '.join(MS_MODES)}, each optionally "
                "followed by +avx2 or +eager"
            )
        setattr(args, name, modes)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args._worker:
        worker_main(args._worker)
        return
    Runner(args).run()


if __name__ == "__main__":
    main()
