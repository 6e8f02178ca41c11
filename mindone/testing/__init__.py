"""Helpers for tests and demos that must run without the Hugging Face Hub."""

from .tokenizer import build_gemma_tokenizer

__all__ = ["build_gemma_tokenizer"]
