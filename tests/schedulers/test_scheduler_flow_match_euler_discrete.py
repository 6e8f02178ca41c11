"""FlowMatchEulerDiscreteScheduler parity with diffusers 0.42.1: schedules, step sequences, scale_noise, config I/O."""

import json

import diffusers
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler as TorchScheduler
from diffusers.schedulers import scheduling_flow_match_euler_discrete as torch_module

import mindspore as ms

from mindone.diffusers import FlowMatchEulerDiscreteScheduler
from mindone.diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteSchedulerOutput
from mindone.diffusers.utils import randn_tensor
from mindone.diffusers.utils.logging import get_logger
from mindone.diffusers.utils.testing_utils import CaptureLogger

TOL = 1e-6

# (id, __init__ kwargs, set_timesteps kwargs): together they exercise every option of the scheduler.
CONFIGS = [
    ("default", {}, {"num_inference_steps": 10}),
    ("lumina2_shift6", {"shift": 6.0}, {"num_inference_steps": 8}),
    ("train_steps_100", {"num_train_timesteps": 100, "shift": 2.5}, {"num_inference_steps": 7}),
    ("one_step", {"shift": 3.0}, {"num_inference_steps": 1}),
    ("dynamic_exponential", {"use_dynamic_shifting": True}, {"num_inference_steps": 9, "mu": 0.83}),
    (
        "dynamic_exponential_seq_len_cfg",
        {
            "use_dynamic_shifting": True,
            "base_shift": 0.3,
            "max_shift": 1.5,
            "base_image_seq_len": 64,
            "max_image_seq_len": 1024,
        },
        {"num_inference_steps": 6, "mu": 1.4},
    ),
    (
        "dynamic_linear",
        {"use_dynamic_shifting": True, "time_shift_type": "linear"},
        {"num_inference_steps": 9, "mu": 2.2},
    ),
    ("shift_terminal", {"shift": 3.0, "shift_terminal": 0.1}, {"num_inference_steps": 8}),
    (
        "dynamic_shift_terminal",
        {"use_dynamic_shifting": True, "shift_terminal": 0.05},
        {"num_inference_steps": 8, "mu": 1.1},
    ),
    ("invert_sigmas", {"shift": 2.0, "invert_sigmas": True}, {"num_inference_steps": 8}),
    ("karras", {"shift": 3.0, "use_karras_sigmas": True}, {"num_inference_steps": 9}),
    ("exponential", {"shift": 3.0, "use_exponential_sigmas": True}, {"num_inference_steps": 9}),
    ("beta", {"shift": 3.0, "use_beta_sigmas": True}, {"num_inference_steps": 9}),
    ("beta_many_steps", {"use_beta_sigmas": True}, {"num_inference_steps": 50}),
    (
        "beta_dynamic_linear",
        {"use_dynamic_shifting": True, "time_shift_type": "linear", "use_beta_sigmas": True},
        {"num_inference_steps": 7, "mu": 3.0},
    ),
    (
        "karras_shift_terminal",
        {"shift": 3.0, "shift_terminal": 0.2, "use_karras_sigmas": True},
        {"num_inference_steps": 6},
    ),
    ("custom_sigmas", {"shift": 3.0}, {"sigmas": list(np.linspace(1.0, 0.05, 7))}),
    (
        "custom_sigmas_with_steps_dynamic",
        {"use_dynamic_shifting": True},
        {"num_inference_steps": 5, "sigmas": [1.0, 0.8, 0.55, 0.3, 0.1], "mu": 0.5},
    ),
    ("custom_timesteps", {"shift": 3.0}, {"timesteps": [1000.0, 812.5, 600.0, 333.3, 120.0, 40.0]}),
    (
        "custom_sigmas_and_timesteps",
        {"shift": 3.0},
        {"sigmas": [1.0, 0.7, 0.45, 0.2], "timesteps": [999.0, 700.0, 450.0, 200.0]},
    ),
    ("custom_sigmas_inverted", {"invert_sigmas": True}, {"sigmas": [0.9, 0.6, 0.3, 0.1]}),
    ("custom_sigmas_exponential", {"use_exponential_sigmas": True}, {"sigmas": [1.0, 0.6, 0.3, 0.05]}),
    ("stochastic", {"shift": 3.0, "stochastic_sampling": True}, {"num_inference_steps": 6}),
]
IDS = [c[0] for c in CONFIGS]


def numpy_of(x):
    return x.numpy() if isinstance(x, torch.Tensor) else x.asnumpy()


def assert_equal_arrays(actual, expected, what):
    actual, expected = numpy_of(actual), numpy_of(expected)
    assert actual.dtype == expected.dtype == np.float32, what
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL, err_msg=what)


def make_pair(config):
    return FlowMatchEulerDiscreteScheduler(**config), TorchScheduler(**config)


def torch_noise_from_numpy(shape, generator=None, device=None, dtype=None, layout=None):
    """diffusers' `randn_tensor`, drawing from the numpy Generator our `randn_tensor` uses (float32, same order)."""
    if isinstance(generator, list):
        arr = np.stack([g.standard_normal((1,) + tuple(shape[1:]), dtype=np.float32)[0] for g in generator])
    else:
        arr = generator.standard_normal(tuple(shape), dtype=np.float32)
    return torch.from_numpy(arr).to(dtype)


@pytest.fixture
def same_noise(monkeypatch):
    monkeypatch.setattr(torch_module, "randn_tensor", torch_noise_from_numpy)


@pytest.mark.parametrize("init_kwargs", [c[1] for c in CONFIGS], ids=IDS)
def test_init_schedule_matches(init_kwargs):
    ours, ref = make_pair(init_kwargs)
    assert_equal_arrays(ours.timesteps, ref.timesteps, "timesteps")
    assert_equal_arrays(ours.sigmas, ref.sigmas, "sigmas")
    assert ours.sigma_min == ref.sigma_min and ours.sigma_max == ref.sigma_max
    assert len(ours) == len(ref)
    assert ours.shift == ref.shift and ours.order == ref.order == 1
    assert ours.step_index is None and ours.begin_index is None


@pytest.mark.parametrize("init_kwargs,set_kwargs", [c[1:] for c in CONFIGS], ids=IDS)
def test_set_timesteps_and_steps_match(init_kwargs, set_kwargs, same_noise):
    ours, ref = make_pair(init_kwargs)
    ours.set_timesteps(**set_kwargs)
    ref.set_timesteps(**set_kwargs)
    assert_equal_arrays(ours.timesteps, ref.timesteps, "timesteps")
    assert_equal_arrays(ours.sigmas, ref.sigmas, "sigmas")
    assert ours.num_inference_steps == ref.num_inference_steps
    assert ours.step_index is None and ours.begin_index is None

    rng = np.random.default_rng(0)
    sample = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    ours_x, ref_x = ms.Tensor(sample), torch.from_numpy(sample)
    for i in range(len(ref.timesteps)):
        model_output = rng.standard_normal(sample.shape).astype(np.float32)
        seed = 100 + i
        ours_out = ours.step(
            ms.Tensor(model_output), ours.timesteps[i], ours_x, generator=np.random.default_rng(seed), return_dict=True
        )
        assert isinstance(ours_out, FlowMatchEulerDiscreteSchedulerOutput)
        ours_x = ours_out.prev_sample
        ref_x = ref.step(
            torch.from_numpy(model_output), ref.timesteps[i], ref_x, generator=np.random.default_rng(seed)
        )[0]
        assert_equal_arrays(ours_x, ref_x, f"prev_sample of step {i}")
        assert ours.step_index == ref.step_index == i + 1


def test_step_python_float_timestep_and_tuple_output():
    ours, ref = make_pair({"shift": 6.0})
    ours.set_timesteps(num_inference_steps=5)
    ref.set_timesteps(num_inference_steps=5)
    x = np.random.default_rng(1).standard_normal((1, 3, 4, 4)).astype(np.float32)
    v = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    t = float(ref.timesteps[2])  # a Python float: compared in float32, as torch does
    out = ours.step(ms.Tensor(v), t, ms.Tensor(x))
    assert isinstance(out, tuple) and len(out) == 1
    expected = ref.step(torch.from_numpy(v), t, torch.from_numpy(x)).prev_sample
    assert ours.step_index == ref.step_index == 3
    assert_equal_arrays(out[0], expected, "prev_sample")


def test_step_keeps_half_precision_model_output_dtype():
    ours, ref = make_pair({"shift": 3.0})
    ours.set_timesteps(num_inference_steps=4)
    ref.set_timesteps(num_inference_steps=4)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float16)
    ours_x, ref_x = ms.Tensor(x), torch.from_numpy(x)
    for i in range(4):
        v = rng.standard_normal(x.shape).astype(np.float16)
        ours_x = ours.step(ms.Tensor(v), ours.timesteps[i], ours_x)[0]
        ref_x = ref.step(torch.from_numpy(v), ref.timesteps[i], ref_x).prev_sample
        assert ours_x.dtype == ms.float16 and ref_x.dtype == torch.float16
        np.testing.assert_allclose(ours_x.asnumpy(), ref_x.numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("stochastic", [False, True])
def test_step_per_token_timesteps(stochastic, same_noise):
    config = {"shift": 3.0, "stochastic_sampling": stochastic}
    ours, ref = make_pair(config)
    ours.set_timesteps(num_inference_steps=6)
    ref.set_timesteps(num_inference_steps=6)
    rng = np.random.default_rng(4)
    batch, tokens, channels = 2, 5, 3
    sample = rng.standard_normal((batch, tokens, channels)).astype(np.float32)
    ours_x, ref_x = ms.Tensor(sample), torch.from_numpy(sample)
    schedule = ref.timesteps.numpy()
    for i in range(3):
        # each token at its own timestep: some on the schedule, some between two of its points
        per_token = rng.choice(schedule[i:], size=(batch, tokens)).astype(np.float32)
        per_token[0, 0] = 0.5 * (schedule[i] + schedule[i + 1])
        model_output = rng.standard_normal(sample.shape).astype(np.float32)
        ours_x = ours.step(
            ms.Tensor(model_output),
            ours.timesteps[i],
            ours_x,
            per_token_timesteps=ms.Tensor(per_token),
            generator=np.random.default_rng(7 + i),
        )[0]
        ref_x = ref.step(
            torch.from_numpy(model_output),
            ref.timesteps[i],
            ref_x,
            per_token_timesteps=torch.from_numpy(per_token),
            generator=np.random.default_rng(7 + i),
        ).prev_sample
        assert_equal_arrays(ours_x, ref_x, f"per-token prev_sample of step {i}")


PER_TOKEN_DTYPES = [(ms.float32, torch.float32), (ms.float16, torch.float16), (ms.bfloat16, torch.bfloat16)]


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("output_dtype", PER_TOKEN_DTYPES, ids=lambda d: str(d[1]))
@pytest.mark.parametrize(
    "token_dtype", PER_TOKEN_DTYPES + [(ms.float64, torch.float64), (ms.int32, torch.int32)], ids=lambda d: str(d[1])
)
def test_step_per_token_timesteps_dtypes(token_dtype, output_dtype, stochastic, same_noise):
    # upstream computes in torch's dtypes: half-precision per-token sigmas, and with stochastic sampling
    # `current_sigma * model_output` rounded to their promoted dtype (bfloat16 had no CPU kernel here)
    (ms_token, pt_token), (ms_out, pt_out) = token_dtype, output_dtype
    ours, ref = make_pair({"shift": 3.0, "stochastic_sampling": stochastic})
    ours.set_timesteps(num_inference_steps=6)
    ref.set_timesteps(num_inference_steps=6)
    rng = np.random.default_rng(5)
    sample = rng.standard_normal((2, 5, 3)).astype(np.float32)
    model_output = rng.standard_normal(sample.shape).astype(np.float32)
    per_token = rng.choice(ref.timesteps.numpy()[1:], size=(2, 5)).astype(np.float32)
    per_token[0, :2] = [0.5 * (ref.timesteps[1] + ref.timesteps[2]), ref.timesteps[1] + 1e-3]
    if ms_token == ms.int32:
        per_token = per_token.round()
    actual = ours.step(
        ms.Tensor(model_output).astype(ms_out),
        ours.timesteps[1],
        ms.Tensor(sample),
        per_token_timesteps=ms.Tensor(per_token).astype(ms_token),
        generator=np.random.default_rng(3),
    )[0]
    expected = ref.step(
        torch.from_numpy(model_output).to(pt_out),
        ref.timesteps[1],
        torch.from_numpy(sample),
        per_token_timesteps=torch.from_numpy(per_token).to(pt_token),
        generator=np.random.default_rng(3),
    ).prev_sample
    assert str(actual.dtype).lower() == str(expected.dtype).split(".")[1], (actual.dtype, expected.dtype)
    np.testing.assert_allclose(actual.asnumpy(), expected.numpy(), rtol=TOL, atol=TOL)


def test_stochastic_sampling_noise_comes_from_the_generator():
    """The noise of a stochastic step is `randn_tensor(sample.shape, generator)`: reproducible, one draw per sample."""
    ours = FlowMatchEulerDiscreteScheduler(shift=3.0, stochastic_sampling=True)
    ours.set_timesteps(num_inference_steps=4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    v = rng.standard_normal(x.shape).astype(np.float32)
    sigmas = ours.sigmas.asnumpy()

    def one_step(generator):
        ours._step_index = None
        return ours.step(ms.Tensor(v), ours.timesteps[1], ms.Tensor(x), generator=generator)[0].asnumpy()

    out = one_step(np.random.default_rng(11))
    np.testing.assert_array_equal(out, one_step(np.random.default_rng(11)))
    assert not np.allclose(out, one_step(np.random.default_rng(12)))
    # the noise the step used, recovered from its output, is the generator's standard normal draw
    x0 = x - sigmas[1] * v
    noise = (out - (1.0 - sigmas[2]) * x0) / sigmas[2]
    expected = np.random.default_rng(11).standard_normal(x.shape, dtype=np.float32)
    np.testing.assert_allclose(noise, expected, atol=1e-4)
    # a list of generators draws sample b from generator b
    per_sample = one_step([np.random.default_rng(21), np.random.default_rng(22)])
    first = one_step([np.random.default_rng(21), np.random.default_rng(99)])
    np.testing.assert_array_equal(per_sample[0], first[0])
    assert not np.allclose(per_sample[1], first[1])


@pytest.mark.parametrize("begin_index", [0, 2, 4])
def test_begin_index_steps_match(begin_index):
    ours, ref = make_pair({"shift": 6.0})
    ours.set_timesteps(num_inference_steps=7)
    ref.set_timesteps(num_inference_steps=7)
    ours.set_begin_index(begin_index)
    ref.set_begin_index(begin_index)
    assert ours.begin_index == ref.begin_index == begin_index
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 4, 4, 4)).astype(np.float32)
    ours_x, ref_x = ms.Tensor(x), torch.from_numpy(x)
    for i in range(begin_index, 7):
        v = rng.standard_normal(x.shape).astype(np.float32)
        ours_x = ours.step(ms.Tensor(v), ours.timesteps[i], ours_x)[0]
        ref_x = ref.step(torch.from_numpy(v), ref.timesteps[i], ref_x).prev_sample
        assert ours.step_index == ref.step_index == i + 1
        assert_equal_arrays(ours_x, ref_x, f"prev_sample of step {i}")
    # set_timesteps resets both indices
    ours.set_timesteps(num_inference_steps=7)
    assert ours.step_index is None and ours.begin_index is None


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("mode", ["lookup", "begin_index", "after_step"])
def test_scale_noise_matches(mode, dtype):
    # computed in the sample's dtype, as upstream (MindSpore's CPU scalar Sub has no bfloat16 kernel)
    ours, ref = make_pair({"shift": 3.0})
    ours.set_timesteps(num_inference_steps=8)
    ref.set_timesteps(num_inference_steps=8)
    rng = np.random.default_rng(7)
    sample = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    noise = rng.standard_normal(sample.shape).astype(np.float32)
    indices = [0, 3, 7] if mode == "lookup" else [2, 2, 2]
    if mode == "begin_index":
        ours.set_begin_index(2)
        ref.set_begin_index(2)
    elif mode == "after_step":
        ours.set_begin_index(0)
        ref.set_begin_index(0)
        for i in range(2):
            ours.step(ms.Tensor(noise), ours.timesteps[i], ms.Tensor(sample))
            ref.step(torch.from_numpy(noise), ref.timesteps[i], torch.from_numpy(sample))
    ours_t = ms.Tensor(ours.timesteps.asnumpy()[indices])
    ref_t = ref.timesteps[indices]
    ms_dtype, torch_dtype = getattr(ms, dtype), getattr(torch, dtype)
    out = ours.scale_noise(ms.Tensor(sample).astype(ms_dtype), ours_t, ms.Tensor(noise).astype(ms_dtype))
    expected = ref.scale_noise(
        torch.from_numpy(sample).to(torch_dtype), ref_t, torch.from_numpy(noise).to(torch_dtype)
    )
    assert out.dtype == ms_dtype
    assert_equal_arrays(out.astype(ms.float32), expected.float(), "scale_noise")
    if dtype != "float32":  # the same rounding in the sample's dtype: bit for bit
        np.testing.assert_array_equal(out.astype(ms.float32).asnumpy(), expected.float().numpy())


def test_index_for_timestep_duplicates_and_errors():
    ours, ref = make_pair({})
    timesteps = [900.0, 700.0, 700.0, 300.0]
    ours.set_timesteps(timesteps=timesteps, sigmas=[0.9, 0.7, 0.7, 0.3])
    ref.set_timesteps(timesteps=timesteps, sigmas=[0.9, 0.7, 0.7, 0.3])
    for t in timesteps:
        assert ours.index_for_timestep(ms.Tensor(np.float32(t))) == ref.index_for_timestep(torch.tensor(t))
        assert ours.index_for_timestep(t) == ref.index_for_timestep(t)
    assert ours.index_for_timestep(700.0) == 2  # the second match, so a restart does not skip a sigma
    # float64 timesteps: 0-d ones (and Python floats) compare in float32, 1-d ones in float64, as torch promotes
    off = 300.0 + 1e-5
    assert ours.index_for_timestep(off) == ref.index_for_timestep(off) == 3
    assert ours.index_for_timestep(ms.Tensor(off, ms.float64)) == ref.index_for_timestep(torch.tensor(off).double())
    with pytest.raises(IndexError):
        ref.index_for_timestep(torch.tensor([off], dtype=torch.float64))
    with pytest.raises(IndexError):
        ours.index_for_timestep(ms.Tensor([off], ms.float64))
    assert ours.index_for_timestep(ms.Tensor([off], ms.float32)) == ref.index_for_timestep(torch.tensor([off])) == 3
    with pytest.raises(IndexError):
        ref.index_for_timestep(torch.tensor(123.0))
    with pytest.raises(IndexError, match="123"):
        ours.index_for_timestep(ms.Tensor(np.float32(123.0)))
    # a float64 schedule compares in float64, whatever the timestep (torch's promotion)
    for schedule_dtype, t in [(torch.float64, off), (torch.float64, torch.tensor(off)), (torch.float32, off)]:
        ours_schedule = ms.Tensor(ref.timesteps.numpy()).astype(
            ms.float64 if schedule_dtype == torch.float64 else ms.float32
        )
        ours_t = ms.Tensor(t.numpy()) if isinstance(t, torch.Tensor) else t
        try:
            expected = ref.index_for_timestep(t, ref.timesteps.to(schedule_dtype))
        except IndexError:
            with pytest.raises(IndexError):
                ours.index_for_timestep(ours_t, ours_schedule)
        else:
            assert ours.index_for_timestep(ours_t, ours_schedule) == expected
    # one value in any shape; several values fail upstream (and would broadcast to a wrong index)
    assert ours.index_for_timestep(ms.Tensor([[300.0]], ms.float32)) == 3
    with pytest.raises(RuntimeError):
        ref.index_for_timestep(torch.tensor([[300.0]]).reshape(1, 1).expand(1, 2))
    with pytest.raises(ValueError, match="single value"):
        ours.index_for_timestep(ms.Tensor([300.0, 900.0], ms.float32))
    ours_step = FlowMatchEulerDiscreteScheduler(shift=3.0)
    ours_step.set_timesteps(5)
    x = ms.Tensor(np.ones((1, 2), np.float32))
    ours_step.step(x, ms.Tensor(ours_step.timesteps.asnumpy()[3].reshape(1, 1)), x)
    assert ours_step.step_index == 4


@pytest.mark.parametrize(
    "config",
    [
        {"use_karras_sigmas": True, "use_beta_sigmas": True},
        {"use_exponential_sigmas": True, "use_karras_sigmas": True},
        {"use_exponential_sigmas": True, "use_beta_sigmas": True},
        {"time_shift_type": "cosine"},
    ],
)
def test_init_errors(config):
    with pytest.raises(ValueError):
        TorchScheduler(**config)
    with pytest.raises(ValueError, match="use_|time_shift_type"):
        FlowMatchEulerDiscreteScheduler(**config)


@pytest.mark.parametrize("name", ["shift", "base_shift", "max_shift", "base_image_seq_len", "shift_terminal"])
def test_config_values_of_the_wrong_type_are_named(name):
    # upstream fails later (in NumPy / torch, or in the pipeline's `calculate_shift`), without the name
    with pytest.raises(TypeError, match=rf"The scheduler config's `{name}` must be a number, got 'big'"):
        FlowMatchEulerDiscreteScheduler(**{name: "big"}, use_dynamic_shifting=True)
    if name != "shift":  # optional (upstream's `Optional[...]`): only the pipeline's shift calculation reads them
        assert getattr(FlowMatchEulerDiscreteScheduler(**{name: None}).config, name) is None


@pytest.mark.parametrize(
    "config,set_kwargs,match",
    [
        ({"use_dynamic_shifting": True}, {"num_inference_steps": 5}, "`mu`"),
        ({}, {"sigmas": [1.0, 0.5], "timesteps": [1000.0, 500.0, 100.0]}, "same length"),
        ({}, {"num_inference_steps": 4, "sigmas": [1.0, 0.5, 0.2]}, "num_inference_steps"),
        ({}, {"num_inference_steps": 4, "timesteps": [1000.0, 500.0]}, "num_inference_steps"),
    ],
)
def test_set_timesteps_errors(config, set_kwargs, match):
    with pytest.raises(ValueError):
        TorchScheduler(**config).set_timesteps(**set_kwargs)
    with pytest.raises(ValueError, match=match):
        FlowMatchEulerDiscreteScheduler(**config).set_timesteps(**set_kwargs)


def test_set_timesteps_needs_a_length():
    with pytest.raises(TypeError):  # upstream: len(None)
        TorchScheduler().set_timesteps()
    with pytest.raises(ValueError, match="num_inference_steps"):
        FlowMatchEulerDiscreteScheduler().set_timesteps()


def test_timesteps_without_sigmas_warns():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    with CaptureLogger(get_logger("mindone")) as captured:
        scheduler.set_timesteps(timesteps=[1000.0, 500.0])
    assert "without `sigmas`" in captured.out


@pytest.mark.parametrize(
    "timestep,torch_timestep",
    [
        (5, 5),
        (ms.Tensor(5, ms.int64), torch.tensor(5, dtype=torch.int64)),
        (ms.Tensor(5, ms.int32), torch.tensor(5, dtype=torch.int32)),
    ],
)
def test_step_rejects_integer_timesteps(timestep, torch_timestep):
    if torch_timestep is not None:
        ref = TorchScheduler()
        ref.set_timesteps(num_inference_steps=4)
        with pytest.raises(ValueError):
            ref.step(torch.zeros(1, 2), torch_timestep, torch.zeros(1, 2))
    ours = FlowMatchEulerDiscreteScheduler()
    ours.set_timesteps(num_inference_steps=4)
    with pytest.raises(ValueError, match="integer indices"):
        ours.step(ms.Tensor(np.zeros((1, 2), np.float32)), timestep, ms.Tensor(np.zeros((1, 2), np.float32)))


@pytest.mark.parametrize(
    "timestep,torch_timestep",
    [
        (np.int64(200), np.int64(200)),
        (ms.Tensor(200, ms.int16), torch.tensor(200, dtype=torch.int16)),
        (ms.Tensor(100, ms.uint8), torch.tensor(100, dtype=torch.uint8)),
    ],
)
def test_other_integer_timesteps_are_looked_up_as_upstream(timestep, torch_timestep):
    """Upstream refuses only Python ints and int32 / int64 tensors as "integer indices": other integer timesteps are
    looked up in the schedule like any timestep."""
    ours, ref = make_pair({})
    for scheduler in (ours, ref):
        scheduler.set_timesteps(sigmas=[0.2, 0.1], timesteps=[200.0, 100.0])
    x, v = np.full((1, 2), 0.5, np.float32), np.full((1, 2), 0.25, np.float32)
    expected = ref.step(torch.from_numpy(v), torch_timestep, torch.from_numpy(x)).prev_sample
    assert_equal_arrays(ours.step(ms.Tensor(v), timestep, ms.Tensor(x))[0], expected, "integer timestep")
    assert ours.step_index == ref.step_index


def test_index_for_timestep_promotes_like_torch():
    """A float timestep against an integer schedule compares in floats (4.5 is not 4), as torch promotes."""
    ours, ref = make_pair({})
    schedule = [5, 4, 4, 1]
    for t, torch_t in [(4.5, 4.5), (ms.Tensor(4.5), torch.tensor(4.5)), (ms.Tensor([4.5]), torch.tensor([4.5]))]:
        with pytest.raises(IndexError):
            ref.index_for_timestep(torch_t, torch.tensor(schedule))
        with pytest.raises(IndexError):
            ours.index_for_timestep(t, ms.Tensor(schedule))
    for t, torch_t in [
        (4.0, 4.0),
        (4, 4),
        (ms.Tensor(4.0), torch.tensor(4.0)),
        (ms.Tensor([1], ms.int32), torch.tensor([1], dtype=torch.int32)),
    ]:
        assert ours.index_for_timestep(t, ms.Tensor(schedule)) == ref.index_for_timestep(
            torch_t, torch.tensor(schedule)
        )


def test_graph_mode_context_gives_the_same_steps(graph_mode):
    """Pipelines may run in GRAPH_MODE: the scheduler's host-side step and scale_noise still work there."""
    ours, ref = make_pair({"shift": 6.0})
    ours.set_timesteps(num_inference_steps=3)
    ref.set_timesteps(num_inference_steps=3)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 4, 4, 4)).astype(np.float32)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    ours_x = ours.scale_noise(ms.Tensor(x), ours.timesteps[:1], ms.Tensor(noise))
    ref_x = ref.scale_noise(torch.from_numpy(x), ref.timesteps[:1], torch.from_numpy(noise))
    assert_equal_arrays(ours_x, ref_x, "scale_noise")
    for i in range(3):
        v = rng.standard_normal(x.shape).astype(np.float32)
        ours_x = ours.step(ms.Tensor(v), ours.timesteps[i], ours_x)[0]
        ref_x = ref.step(torch.from_numpy(v), ref.timesteps[i], ref_x).prev_sample
        assert_equal_arrays(ours_x, ref_x, f"prev_sample of step {i}")


def test_set_shift_and_time_shift_helpers():
    ours, ref = make_pair({"shift": 2.0, "shift_terminal": 0.3})
    ours.set_shift(5.0)
    ref.set_shift(5.0)
    assert ours.shift == ref.shift == 5.0
    ours.set_timesteps(num_inference_steps=6)
    ref.set_timesteps(num_inference_steps=6)
    assert_equal_arrays(ours.sigmas, ref.sigmas, "sigmas after set_shift")
    assert abs(float(ours.sigmas[-2]) - 0.3) < 1e-6
    t = np.linspace(0.95, 0.2, 6)
    np.testing.assert_array_equal(ours.stretch_shift_to_terminal(t), ref.stretch_shift_to_terminal(t))
    for kind in ["exponential", "linear"]:
        ours_k, ref_k = make_pair({"time_shift_type": kind, "use_dynamic_shifting": True})
        np.testing.assert_array_equal(ours_k.time_shift(1.2, 1.0, t), ref_k.time_shift(1.2, 1.0, t))


def test_save_load_round_trip_both_directions(tmp_path):
    config = {"shift": 3.0, "use_dynamic_shifting": True, "time_shift_type": "linear", "shift_terminal": 0.1}
    ours, ref = make_pair(config)

    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "FlowMatchEulerDiscreteScheduler"
    ref_loaded = TorchScheduler.from_pretrained(tmp_path / "ours")

    ref.save_pretrained(tmp_path / "ref")
    ours_loaded = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "ref")
    ours_reloaded = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "ours")

    def public(cfg):
        return {k: v for k, v in dict(cfg).items() if not k.startswith("_")}

    assert (
        public(ref_loaded.config) == public(ref.config) == public(ours_loaded.config) == public(ours_reloaded.config)
    )
    for scheduler in (ours_loaded, ours_reloaded):
        scheduler.set_timesteps(num_inference_steps=5, mu=1.5)
    ref_loaded.set_timesteps(num_inference_steps=5, mu=1.5)
    assert_equal_arrays(ours_loaded.sigmas, ref_loaded.sigmas, "sigmas after loading a diffusers config")
    assert_equal_arrays(ours_reloaded.sigmas, ref_loaded.sigmas, "sigmas after our round trip")

    # subfolder, overriding kwargs and from_config with a diffusers config
    ref.save_pretrained(tmp_path / "pipe" / "scheduler")
    sub = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "pipe", subfolder="scheduler", shift=7.0)
    assert sub.config.shift == 7.0 and sub.config.time_shift_type == "linear"
    from_cfg = FlowMatchEulerDiscreteScheduler.from_config(ref.config)
    assert public(from_cfg.config) == public(ref.config)
    assert FlowMatchEulerDiscreteScheduler in ours.compatibles
    with pytest.raises(EnvironmentError):
        FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "pipe")


def test_karras_reads_sigma_range_from_a_foreign_config():
    """As upstream, `sigma_min` / `sigma_max` carried in a loaded config bound the Karras schedule."""
    config = {"use_karras_sigmas": True, "shift": 3.0, "sigma_min": 0.02, "sigma_max": 0.9}
    ours = FlowMatchEulerDiscreteScheduler.from_config(config)
    ref = TorchScheduler.from_config(config)
    ours.set_timesteps(num_inference_steps=6)
    ref.set_timesteps(num_inference_steps=6)
    assert_equal_arrays(ours.sigmas, ref.sigmas, "karras sigmas")
    assert abs(float(ours.sigmas[0]) - 0.9) < 1e-6


def test_beta_sigmas_need_scipy(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else find_spec(name, *a))
    with pytest.raises(ImportError, match="scipy"):
        FlowMatchEulerDiscreteScheduler(use_beta_sigmas=True)
    FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True)  # only beta sigmas need it


def test_other_scheduler_configs_load_quietly(tmp_path):
    # keys of a scheduler class this package does not have are dropped, as upstream drops them: no warning
    diffusers.EulerDiscreteScheduler().save_pretrained(tmp_path / "euler")
    with CaptureLogger(get_logger("mindone")) as captured:
        ours = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "euler")
    assert captured.out == ""
    theirs = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "euler")
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(ours.config) == public(theirs.config)
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "scheduler_config.json").write_text(json.dumps({"shift": 2.0, "no_such_option": 1}))
    with CaptureLogger(get_logger("mindone")) as captured:
        FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "extra")
    assert "{'no_such_option': 1} were passed" in captured.out  # an unknown key of this class's own config warns


def test_step_and_scale_noise_check_their_inputs_on_the_call():
    """Shapes that do not broadcast fail in the call that got them (MindSpore reports a failed broadcast at a later,
    unrelated operation), and the scheduler's state is unchanged; broadcastable ones work as in torch."""
    ours, ref = make_pair({})
    for scheduler in (ours, ref):
        scheduler.set_timesteps(2)
    sample, bad = np.ones((1, 4, 4, 4), np.float32), np.ones((1, 4, 4, 3), np.float32)
    t = ours.timesteps[0]
    with pytest.raises(
        ValueError, match=r"`step`: the shapes of `model_output` \(1, 4, 4, 3\), `sample` \(1, 4, 4, 4\)"
    ):
        ours.step(ms.Tensor(bad), t, ms.Tensor(sample))
    with pytest.raises(RuntimeError):
        ref.step(torch.from_numpy(bad), ref.timesteps[0], torch.from_numpy(sample))
    assert ours.step_index is None
    with pytest.raises(TypeError, match=r"`model_output` of `step` must be a mindspore.Tensor, got numpy.ndarray"):
        ours.step(bad, t, ms.Tensor(sample))
    with pytest.raises(TypeError, match=r"`sample` of `step` must be a mindspore.Tensor, got numpy.ndarray"):
        ours.step(ms.Tensor(sample), t, sample)
    with pytest.raises(
        ValueError, match=r"`scale_noise`: `timestep` \(1 values: .*\), `sample` \(1, 4, 4, 3\) and `noise`"
    ):
        ours.scale_noise(ms.Tensor(bad), t, ms.Tensor(sample))
    with pytest.raises(ValueError, match=r"`timestep` \(2 values: .*\), `sample` \(3, 4, 4, 4\)"):
        ours.scale_noise(ms.Tensor(np.ones((3, 4, 4, 4), np.float32)), ours.timesteps, ms.Tensor(sample))
    with pytest.raises(TypeError, match=r"`noise` of `scale_noise` must be a mindspore.Tensor"):
        ours.scale_noise(ms.Tensor(sample), t, sample)
    # broadcasting as torch: a model output of one row for a batch of samples
    output = np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 1, 4)
    batch = np.random.default_rng(0).standard_normal((2, 3, 4), dtype=np.float32)
    for _ in range(2):
        got = ours.step(ms.Tensor(output), ours.timesteps[ours.step_index or 0], ms.Tensor(batch))[0]
        expected = ref.step(torch.from_numpy(output), ref.timesteps[ref.step_index or 0], torch.from_numpy(batch))
        assert_equal_arrays(got, expected.prev_sample, "broadcast step")
    # one step past the schedule (upstream: a bare IndexError from the sigma lookup)
    with pytest.raises(IndexError, match=r"after the last of the 2 steps of the schedule: call `set_timesteps` again"):
        ours.step(ms.Tensor(sample), t, ms.Tensor(sample))
    with pytest.raises(IndexError):
        ref.step(torch.from_numpy(sample), ref.timesteps[0], torch.from_numpy(sample))
    assert ours.step_index == ref.step_index == 2


@pytest.mark.parametrize("name", ["sigmas", "timesteps"])
@pytest.mark.parametrize("value", ["abc", [[1.0, 0.5]], 0.5])
def test_set_timesteps_refuses_schedules_that_are_not_lists_of_floats(name, value):
    scheduler = FlowMatchEulerDiscreteScheduler()
    with pytest.raises(TypeError, match=rf"`{name}` must be a 1-D list / array / tensor of floats, got"):
        scheduler.set_timesteps(**{name: value})


def test_device_arguments_and_missing_noise_are_explained():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    for call in (lambda: scheduler.set_timesteps(4, "cpu"), lambda: scheduler.set_timesteps(4, device="cpu")):
        with pytest.raises(TypeError, match="`set_timesteps` takes no `device`"):
            call()
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['num_steps'\]"):
        scheduler.set_timesteps(num_steps=4)
    # upstream's positional `set_timesteps(n, device, sigmas)`: here the sigmas would land in `mu`
    with pytest.raises(TypeError, match="`mu` must be a number, but is a list"):
        scheduler.set_timesteps(3, None, [1.0, 0.6, 0.3])
    scheduler.set_timesteps(4, mu=ms.Tensor(0.5))  # a 0-dim tensor is a number
    scheduler.set_timesteps(4)
    sample = ms.Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="`scale_noise` needs `noise`"):
        scheduler.scale_noise(sample, scheduler.timesteps[:2])
    # diffusers' schedulers are PushToHubMixins; here it is explained (it was an AttributeError)
    with pytest.raises(NotImplementedError, match="`FlowMatchEulerDiscreteScheduler.push_to_hub` is not supported"):
        scheduler.push_to_hub("user/repo")


@pytest.mark.parametrize("time_shift_type", ["exponential", "linear"])
@pytest.mark.parametrize("sigma_option", [None, "use_karras_sigmas", "use_beta_sigmas"])
def test_tensor_mu_is_a_number(time_shift_type, sigma_option):
    # a one-element MindSpore tensor or NumPy array `mu` gives the schedule of the same Python float
    config = {"use_dynamic_shifting": True, "time_shift_type": time_shift_type}
    if sigma_option:
        config[sigma_option] = True
    ours, ref = make_pair(config)
    ref.set_timesteps(5, mu=2.2)
    for mu in (ms.Tensor(2.2, ms.float32), ms.Tensor([2.2], ms.float32), np.array([2.2], np.float32)):
        ours.set_timesteps(5, mu=mu)
        np.testing.assert_allclose(ours.sigmas.asnumpy(), ref.sigmas.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ours.timesteps.asnumpy(), ref.timesteps.numpy(), rtol=1e-6, atol=1e-6)


def test_generator_lists_as_upstream():
    # one generator in a list serves the whole batch; longer lists use their first `batch` generators
    sample = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    outputs = []
    for generator in ([np.random.default_rng(7)], np.random.default_rng(7)):
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, stochastic_sampling=True)
        scheduler.set_timesteps(4)
        outputs.append(
            scheduler.step(ms.Tensor(sample), scheduler.timesteps[0], ms.Tensor(sample), generator=generator)[0]
        )
    np.testing.assert_array_equal(outputs[0].asnumpy(), outputs[1].asnumpy())
    long_list = randn_tensor((2, 3), generator=[np.random.default_rng(i) for i in range(3)]).asnumpy()
    pair = randn_tensor((2, 3), generator=[np.random.default_rng(i) for i in range(2)]).asnumpy()
    np.testing.assert_array_equal(long_list, pair)
    with pytest.raises(ValueError, match="list of generators of length 2, but requested an effective batch size of 3"):
        randn_tensor((3, 3), generator=[np.random.default_rng(i) for i in range(2)])
    for generator in (torch.Generator().manual_seed(0), [torch.Generator(), torch.Generator()]):
        with pytest.raises(TypeError, match="np.random.default_rng"):
            randn_tensor((2, 3), generator=generator)


def test_shift_terminal_one_step_is_not_nan():
    # upstream bug fixed (diffusers issue 14411): one default step with `shift_terminal` stretched 0 / 0 into NaN
    ours, ref = make_pair({"shift": 3.0, "shift_terminal": 0.1})
    ours.set_timesteps(1)
    with np.errstate(invalid="ignore"):  # upstream's 0 / 0
        ref.set_timesteps(1)
    assert np.isnan(ref.sigmas.numpy()[0]) and np.isnan(ref.timesteps.numpy()).all()
    np.testing.assert_array_equal(ours.sigmas.asnumpy(), [1.0, 0.0])
    np.testing.assert_array_equal(ours.timesteps.asnumpy(), [1000.0])
    # a one-point schedule below sigma 1 has something to stretch: as upstream
    ours.set_timesteps(sigmas=[0.8])
    ref.set_timesteps(sigmas=[0.8])
    assert_equal_arrays(ours.sigmas, ref.sigmas, "one custom sigma")
    assert_equal_arrays(ours.timesteps, ref.timesteps, "one custom sigma's timestep")
