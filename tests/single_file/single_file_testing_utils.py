"""Test-side inverses of diffusers' single-file converters (diffusers layout -> original layout), written
independently of mindone's plans so each side checks the other; they are validated against diffusers' own converters."""

import re

import numpy as np
import torch

LUMINA2_RENAMES = [
    ("time_caption_embed.caption_embedder.", "cap_embedder."),
    ("time_caption_embed.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
    ("time_caption_embed.timestep_embedder.linear_2.", "t_embedder.mlp.2."),
    ("norm_out.linear_1.", "final_layer.adaLN_modulation.1."),
    ("norm_out.linear_2.", "final_layer.linear."),
    (".attn.to_out.0.", ".attention.out."),
    (".attn.norm_q.", ".attention.q_norm."),
    (".attn.norm_k.", ".attention.k_norm."),
    (".feed_forward.linear_1.", ".feed_forward.w1."),
    (".feed_forward.linear_2.", ".feed_forward.w2."),
    (".feed_forward.linear_3.", ".feed_forward.w3."),
    (".norm1.linear.", ".adaLN_modulation.1."),
    (".norm1.norm.", ".attention_norm1."),
    (".norm1.", ".attention_norm1."),
    (".norm2.", ".attention_norm2."),
]


def _cat(parts):
    return torch.cat(parts, 0) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts, 0)


def lumina2_diffusers_to_original(sd, prefix=""):
    """diffusers Lumina2Transformer2DModel state dict -> Lumina-Image-2.0 (NextDiT) state dict."""
    out = {}
    for key, value in sd.items():
        if ".attn.to_k." in key or ".attn.to_v." in key:
            continue
        if ".attn.to_q." in key:
            block = key.split("attn.to_q.")[0]
            parts = [sd[f"{block}attn.to_{n}.weight"] for n in "qkv"]
            out[f"{block}attention.qkv.weight"] = _cat(parts)
            continue
        new = key
        for old, rep in LUMINA2_RENAMES:
            if old in new:
                new = new.replace(old, rep)
                break
        out[new] = value
    ref = sd["x_embedder.weight"]
    ones = torch.ones if isinstance(ref, torch.Tensor) else np.ones
    out["norm_final.weight"] = ones(ref.shape[0], dtype=ref.dtype)
    return {prefix + k: v for k, v in out.items()}


VAE_RENAMES = [
    ("mid_block.resnets.0.", "mid.block_1."),
    ("mid_block.resnets.1.", "mid.block_2."),
    ("mid_block.attentions.0.group_norm.", "mid.attn_1.norm."),
    ("mid_block.attentions.0.to_q.", "mid.attn_1.q."),
    ("mid_block.attentions.0.to_k.", "mid.attn_1.k."),
    ("mid_block.attentions.0.to_v.", "mid.attn_1.v."),
    ("mid_block.attentions.0.to_out.0.", "mid.attn_1.proj_out."),
    ("down_blocks.", "down."),
    (".resnets.", ".block."),
    ("conv_shortcut", "nin_shortcut"),
    (".downsamplers.0.", ".downsample."),
    (".upsamplers.0.", ".upsample."),
    ("conv_norm_out", "norm_out"),
]


def vae_diffusers_to_ldm(sd, num_up_blocks, prefix=""):
    """diffusers AutoencoderKL state dict -> FLUX `ae.safetensors` / LDM state dict (attention as 1x1 convs)."""
    out = {}
    for key, value in sd.items():
        new = key
        m = re.match(r"decoder\.up_blocks\.(\d+)\.", new)
        if m:
            new = new.replace(m.group(0), f"decoder.up.{num_up_blocks - 1 - int(m.group(1))}.")
        for old, rep in VAE_RENAMES:
            new = new.replace(old, rep)
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", new):
            value = value[:, :, None, None]
        out[prefix + new] = value
    return out
