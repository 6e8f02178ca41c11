"""A tiny Gemma-style tokenizer built locally, for tests and demos that cannot download `google/gemma-2-2b`.

`build_gemma_tokenizer()` trains a small BPE model with `tokenizers` on a fixed set of sentences (deterministic) and
wraps it as transformers' `GemmaTokenizerFast`: byte fallback (every string encodes, unseen characters become byte
tokens), a `Replace(" ", "▁")` normalizer, a post-processor that prepends `<bos>`, and Gemma's special ids `<pad>`=0,
`<eos>`=1, `<bos>`=2, `<unk>`=3 (`<mask>`=4, then the 256 byte tokens `<0x00>`..`<0xFF>`), padding on the right.
Saved with `save_pretrained`, the folder has the real layout (`tokenizer.json`, `tokenizer_config.json`) and reloads
with `AutoTokenizer.from_pretrained(folder)`. Size the test text encoder with `vocab_size=len(tokenizer)`.
"""

import json
import os
from typing import Optional, Union

from tokenizers import Tokenizer, normalizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]

TRAINING_SENTENCES = [
    "A photo of a cat sitting on a wooden table.",
    "A painting of a lighthouse by the sea at sunset, in the style of Monet.",
    "An astronaut riding a horse on the moon, high quality, detailed.",
    "A red apple and a green pear on a white plate.",
    "A futuristic city skyline at night with neon lights and flying cars.",
    "A close-up portrait of an old man with a grey beard, soft light.",
    "Two dogs playing in the snow in a quiet forest.",
    "You are an assistant designed to generate superior images with the superior degree of image-text alignment "
    "based on textual prompts or user prompts. <Prompt Start> ",
    "A watercolor drawing of mountains, rivers and small houses.",
    "The quick brown fox jumps over the lazy dog.",
]


def build_gemma_tokenizer(save_directory: Optional[Union[str, os.PathLike]] = None, vocab_size: int = 400):
    """Train and return a tiny `GemmaTokenizerFast` (deterministic, no Hub access).

    Args:
        save_directory (`str` or `os.PathLike`, *optional*):
            If given, the tokenizer is saved there with `save_pretrained` (e.g. a pipeline's `tokenizer/` folder).
        vocab_size (`int`, *optional*, defaults to 400):
            Upper bound of the vocabulary (special and byte tokens included); at least 300.

    Returns:
        `transformers.GemmaTokenizerFast` with `padding_side="right"`; `len(tokenizer)` is its vocabulary size.
    """
    from transformers import GemmaTokenizerFast

    if not isinstance(vocab_size, int) or vocab_size < len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 39:
        raise ValueError(
            f"`vocab_size` must be an int >= 300 (special and byte tokens come first), got {vocab_size!r}."
        )

    # 1. train a BPE model on the sentences as Gemma's backend sees them (spaces replaced by "▁", no pre-tokenizer)
    backend = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + BYTE_TOKENS,
        min_frequency=2,
        show_progress=False,
    )
    backend.train_from_iterator(TRAINING_SENTENCES, trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    vocab = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    expected = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    if any(vocab.get(token) != i for token, i in expected.items()):
        raise RuntimeError(f"The trained vocabulary does not start with {expected}.")

    # 2. wrap it as transformers' Gemma tokenizer (which sets the normalizer, byte-fallback decoder and `<bos>` template)
    tokenizer = GemmaTokenizerFast(
        vocab=vocab,
        merges=merges,
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        mask_token="<mask>",
        add_bos_token=True,
        add_eos_token=False,
        padding_side="right",
    )
    if save_directory is not None:
        tokenizer.save_pretrained(os.fspath(save_directory))
    return tokenizer
