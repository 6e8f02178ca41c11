"""`mindone.testing.build_gemma_tokenizer`: a tiny Gemma-style tokenizer built without the Hub."""

import json

import numpy as np
import pytest
from transformers import AutoTokenizer, GemmaTokenizerFast

from mindone.testing import build_gemma_tokenizer

PROMPTS = [
    "A photo of a cat sitting on a wooden table.",
    "an unseen word: zyxwvut, digits 12345 and ümlauts, 日本語 🙂",
    "  leading and  double spaces ",
    "",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    return build_gemma_tokenizer(folder), folder


def test_layout_and_special_tokens(saved):
    tokenizer, folder = saved
    assert isinstance(tokenizer, GemmaTokenizerFast)
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ["<pad>", "<eos>", "<bos>", "<unk>"]}
    assert ids == {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.padding_side == "right"
    assert json.loads((folder / "tokenizer_config.json").read_text())["padding_side"] == "right"
    backend = json.loads((folder / "tokenizer.json").read_text())
    assert backend["model"]["type"] == "BPE" and backend["model"]["byte_fallback"] is True
    assert backend["normalizer"] == {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
    assert 300 < len(tokenizer) <= 400


def test_encoding(saved):
    tokenizer, _ = saved
    for prompt in PROMPTS:
        ids = tokenizer(prompt).input_ids
        assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id not in ids  # `<bos>` prepended only
        assert tokenizer.unk_token_id not in ids  # byte fallback: every character encodes
        assert tokenizer.decode(ids, skip_special_tokens=True) == prompt
    tokens = tokenizer.tokenize("a cat sat")
    assert any("▁" in t for t in tokens)
    # merges were learned: a training sentence needs fewer tokens than characters
    assert len(tokenizer(PROMPTS[0]).input_ids) < 0.6 * len(PROMPTS[0])
    assert "<0xE6>" in tokenizer.tokenize("日")


def test_deterministic(saved, tmp_path):
    _, folder = saved
    build_gemma_tokenizer(tmp_path)
    assert (tmp_path / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()


def test_reloads_identically_with_auto_tokenizer(saved):
    tokenizer, folder = saved
    reloaded = AutoTokenizer.from_pretrained(str(folder))
    assert isinstance(reloaded, GemmaTokenizerFast) and reloaded.padding_side == "right"
    for prompt in PROMPTS:
        assert reloaded(prompt).input_ids == tokenizer(prompt).input_ids
    # as the Lumina2 pipeline calls it: right-padded to a fixed length, truncated
    kwargs = dict(padding="max_length", max_length=16, truncation=True, return_tensors="np")
    a, b = tokenizer(PROMPTS, **kwargs), reloaded(PROMPTS, **kwargs)
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    np.testing.assert_array_equal(a.attention_mask, b.attention_mask)
    lengths = a.attention_mask.sum(-1)
    assert lengths[3] == 1 and lengths[1] == 16
    for row, n in zip(a.input_ids, lengths):
        assert np.all(row[n:] == 0)  # `<pad>` on the right


def test_bad_vocab_size():
    with pytest.raises(ValueError, match="vocab_size"):
        build_gemma_tokenizer(vocab_size=100)
