"""Token counts for context budgets: the embedder's own WordPiece (BERT uncased), already
carried offline with the model. Measured against GPT-4o's o200k BPE on the 2,760 LoCoMo dev
turns rendered as context lines (bench/context.py): 0.988 of the BPE count in total, and
within 0.88-1.07 of it for 90% of lines (characters / 4 gave 0.77-1.12)."""

from __future__ import annotations

import math
import threading
from functools import lru_cache

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _tokenizer():
    try:
        from tokenizers import Tokenizer

        from shared.minilm import tokenizer_path

        tok = Tokenizer.from_file(str(tokenizer_path()))
    except Exception:  # noqa: BLE001 - no tokenizer file: fall back to the estimate
        return None
    tok.no_truncation()
    tok.no_padding()
    return tok


def additive() -> bool:
    """Whether the count of lines joined by line breaks is the sum of their counts (the
    WordPiece tokenizer splits on whitespace first; the characters / 4 estimate does not
    add up), so a rendered block need not be encoded again as a whole."""
    return _tokenizer() is not None


def count_tokens(text: str) -> int:
    # The same memory's line is counted again by every GetContext that considers it, and
    # encoding holds the GIL: remember the counts of lines of ordinary length.
    if len(text) <= _CACHED_CHARS:
        return _count_cached(text)
    return _count(text)


_CACHED_CHARS = 2000


def _count(text: str) -> int:
    tok = _tokenizer()
    if tok is None:
        return max(1, math.ceil(len(text) / 4))
    return max(1, len(tok.encode(text, add_special_tokens=False).ids))


_count_cached = lru_cache(maxsize=16384)(_count)


def truncate(text: str, tokens: int) -> str:
    """The longest prefix of text (cut at a token boundary) of at most `tokens` tokens."""
    tok = _tokenizer()
    if tok is None:
        return text[: max(0, tokens * 4)]
    enc = tok.encode(text, add_special_tokens=False)
    if len(enc.ids) <= tokens:
        return text
    end = enc.offsets[tokens - 1][1] if tokens > 0 else 0
    return text[:end]
