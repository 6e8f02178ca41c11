"""A LoRA fine-tuning loop on the Lumina2 transformer against diffusers + PEFT, as a user adapting diffusers'
`train_dreambooth_lora_lumina2.py` writes it: `add_adapter`, the trainable parameters, SGD steps on an MSE loss
(`ms.value_and_grad` + `nn.SGD`, PyNative and GRAPH_MODE, with and without gradient checkpointing), then inference and
the trained LoRA saved with `get_peft_model_state_dict` + `save_lora_weights` and loaded into diffusers.

The adapters start with random A and B on both sides, so the weights after each step compare the loop itself: the
per-tensor gradient error (MindSpore's float32 rounding, up to ~1e-5) is tested with the models' gradients."""

import numpy as np
import peft
import pytest
import torch
from peft.utils import get_peft_model_state_dict as torch_get_peft_model_state_dict

import mindspore as ms
from mindspore import mint, nn

import mindone.peft as mp
from mindone.diffusers import Lumina2Pipeline
from tests.lora.lumina2_lora_utils import (
    ATTN_TARGETS,
    diffusers_twin,
    make_inputs,
    make_twins,
    run_ms,
    run_torch,
)
from tests.testing_utils import assert_close, rel_l2

LR = 0.01
STEPS = 3


def _twins_with_trainable_lora():
    torch_model, model = make_twins()
    torch.manual_seed(3)
    torch_model.add_adapter(peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=ATTN_TARGETS))
    model.add_adapter(mp.LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=ATTN_TARGETS))
    ours = dict(model.parameters_and_names())
    for name, param in torch_model.named_parameters():
        if "lora_" in name:
            ours[name].copy_(ms.Tensor(param.detach().numpy()))
    return torch_model, model


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def test_lora_sgd_steps_inference_and_saving_match_diffusers(tmp_path, mode, checkpointing):
    torch_model, model = _twins_with_trainable_lora()
    trainable = sorted(name for name, param in torch_model.named_parameters() if param.requires_grad)
    ours = dict(model.parameters_and_names())
    by_id = {id(param): name for name, param in ours.items()}
    assert sorted(by_id[id(param)] for param in model.trainable_params()) == trainable  # the LoRA weights only
    assert len(trainable) == 2 * len(ATTN_TARGETS) * 6  # A and B of 4 layers in each of the 6 blocks

    inputs = make_inputs()
    target = np.random.default_rng(7).standard_normal(inputs[0].shape).astype(np.float32)
    torch_params = dict(torch_model.named_parameters())
    initial = {name: torch_params[name].detach().numpy().copy() for name in trainable}
    torch_optimizer = torch.optim.SGD([torch_params[name] for name in trainable], lr=LR)
    params = [ours[name] for name in trainable]
    optimizer = nn.SGD(params, learning_rate=LR)
    if checkpointing:
        torch_model.enable_gradient_checkpointing()
        model.enable_gradient_checkpointing()
    torch_model.train()
    model.set_train(True)

    ms.set_context(mode=mode)
    try:
        x, t, cap, mask = (ms.Tensor(a) for a in inputs)
        # GRAPH_MODE differentiates `construct` with the host-side preparation done outside (docs/guides/graph_mode.md)
        prepared = model.prepare_inputs(x, cap, mask)

        def loss_fn(x, t, cap, target):
            out = model.construct(x, t, cap, *prepared) if mode == ms.GRAPH_MODE else model(x, t, cap, mask)[0]
            return mint.mean((out - target) ** 2)

        grad_fn = ms.value_and_grad(loss_fn, None, params)
        for step in range(STEPS):
            torch_optimizer.zero_grad()
            torch_out = torch_model(*(torch.from_numpy(a) for a in inputs), return_dict=False)[0]
            torch_loss = torch.mean((torch_out - torch.from_numpy(target)) ** 2)
            torch_loss.backward()
            torch_optimizer.step()
            loss, grads = grad_fn(x, t, cap, ms.Tensor(target))
            optimizer(grads)
            assert_close(loss.asnumpy(), torch_loss.item(), 1e-5, f"loss of step {step}")
            for name in trainable:  # updated in place, and seen by the next (compiled) step
                assert_close(ours[name].asnumpy(), torch_params[name].detach().numpy(), 1e-5, f"{name}, step {step}")

        # the steps move the weights well beyond the tolerance, so a lost update would show
        moved = np.median([rel_l2(torch_params[name].detach().numpy(), initial[name]) for name in trainable])
        assert moved > 1e-4, f"the LoRA weights hardly moved ({moved:.1e})"
        torch_model.eval()
        model.set_train(False)
        trained = run_torch(torch_model, inputs)
        assert_close(run_ms(model, inputs), trained, 1e-5, "inference after training")
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)

    # saved as the diffusers training script does, loaded into a fresh diffusers transformer
    state_dict = mp.get_peft_model_state_dict(model)
    assert sorted(state_dict) == sorted(torch_get_peft_model_state_dict(torch_model))
    Lumina2Pipeline.save_lora_weights(tmp_path, transformer_lora_layers=state_dict)
    fresh = diffusers_twin()
    fresh.load_lora_adapter(str(tmp_path), weight_name="pytorch_lora_weights.safetensors", prefix="transformer")
    assert_close(run_torch(fresh, inputs), trained, 1e-5, "the saved LoRA in diffusers")
