"""Smoke test of `benchmarks/benchmark_lumina2.py --quick`: the script runs both sides with tiny sizes, the outputs of
the two frameworks agree, and the results table is written into the markdown file without touching the rest of it.
Nothing here is timed: speed is measured by the benchmark itself, never asserted."""

import os
import re
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO_ROOT, "benchmarks", "benchmark_lumina2.py")
sys.path.insert(0, os.path.dirname(SCRIPT))

import benchmark_lumina2 as bench  # noqa: E402


def test_quick_run_writes_the_table(tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text(
        "# Benchmarks\n\nhand-written intro\n\n"
        + bench.RESULTS_BEGIN
        + "\nold table\n"
        + bench.RESULTS_END
        + "\n\nhand-written analysis\n"
    )
    cmd = [
        sys.executable,
        SCRIPT,
        "--quick",
        "--sections",
        "transformer",
        "--ms-modes",
        "pynative-blocking,jit",
        "--repeats",
        "1",
        "--output",
        str(output),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    text = output.read_text()
    # the generated block replaced the old one, the hand-written parts stay
    assert "old table" not in text
    assert text.startswith("# Benchmarks\n\nhand-written intro\n\n")
    assert text.rstrip().endswith("hand-written analysis")
    block = text.split(bench.RESULTS_BEGIN, 1)[1].split(bench.RESULTS_END, 1)[0]
    assert "quick mode" in block and "MindSpore" in block

    rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| section")]
    variants = [row.split(" | ")[1] for row in rows]
    for variant in ("torch (diffusers)", "mindone pynative-blocking", "mindone jit"):
        assert variant in variants, variants
    assert any(v.startswith("torch: ") for v in variants) and any(v.startswith("ms: ") for v in variants)
    assert not any(" error " in row for row in rows), rows

    # both MindSpore modes computed what diffusers computed (same weights through the checkpoint keys)
    errors = [float(e) for e in re.findall(r"rel\. L2 vs torch ([0-9.e+-]+)", block)]
    assert len(errors) == 2 and max(errors) < 1e-5, errors
    # every forward row has a time ratio and a memory ratio against torch
    for row in rows:
        cells = row.strip("| ").split(" | ")
        if cells[1].startswith("mindone"):
            assert cells[6].endswith("x") and cells[7].endswith("x"), row


def test_flops_of_the_real_config():
    args = bench.parse_args([])
    spec = bench.sizes(False, args)["transformer"]
    # 2 joint layers on 1024 + 128 tokens, 2 noise-refiner layers on 1024 tokens, 2 context-refiner layers on 128
    flops = bench.transformer_flops(spec)
    d, kv_dim, ffn = 2304, 768, 9216
    per_token = 2 * (2 * d * d + 2 * d * kv_dim + 3 * d * ffn)
    linear = 2 * per_token * (2 * 1152 + 2 * 1024 + 2 * 128)
    assert linear < flops < 1.1 * linear


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sections", "transformer,bogus"], "unknown sections"),
        (["--ms-modes", "pynative,eager"], "unknown modes"),
        (["--vae-ms-modes", "jit+avx512"], "unknown modes"),
        (["--repeats", "0"], "--repeats must be >= 1"),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_avx2_modes_set_the_worker_environment(monkeypatch):
    args = bench.parse_args(["--vae-ms-modes", "jit,pynative-blocking+avx2", "--ms-modes", "pynative+eager"])
    assert args.vae_ms_modes == ["jit", "pynative-blocking+avx2"] and args.ms_modes == ["pynative+eager"]
    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen[json_task(cmd)["mode"]] = env.get("ONEDNN_MAX_CPU_ISA")
        return subprocess.CompletedProcess(cmd, 0, stdout='RESULT {"times": [1.0]}\n', stderr="")

    def json_task(cmd):
        import json

        return json.loads(cmd[cmd.index("--_worker") + 1])

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    for mode in args.vae_ms_modes:
        assert bench.run_worker({"section": "vae", "side": "ms", "mode": mode}, 10, lambda msg: None) == {
            "times": [1.0]
        }
    assert seen == {"jit": None, "pynative-blocking+avx2": "AVX2"}
