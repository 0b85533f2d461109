"""Text as the LTM model sees it: bytes, cut into words (runs of ASCII letters and digits) and the
separators between them, the way a pre-tokenizer splits text before a tokenizer sees it.

Everything here is vectorised numpy over the raw bytes, so a 100M-character context is cut in
seconds with no Python loop per character or per word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

END = 0  # the character code that ends a word (chars are ASCII 1..127; other bytes map to 127)
_IS_WORD = np.zeros(256, dtype=bool)
for _lo, _hi in ((48, 57), (65, 90), (97, 122)):
    _IS_WORD[_lo : _hi + 1] = True


def to_bytes(text: str | bytes | np.ndarray) -> np.ndarray:
    """The text as a uint8 array of ASCII codes 1..127 (other bytes, and NUL, become 127)."""
    if isinstance(text, np.ndarray):
        data = text.astype(np.uint8, copy=False)
    else:
        raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
        data = np.frombuffer(raw, dtype=np.uint8)
    if data.size and (data.max(initial=0) > 127 or data.min(initial=255) == 0):
        data = np.where((data > 127) | (data == 0), 127, data).astype(np.uint8)
    return data


def is_word_byte(code: int) -> bool:
    return bool(_IS_WORD[int(code)])


@dataclass
class Words:
    """Word ``i`` is ``data[starts[i] : starts[i] + lengths[i]]``; its separator is what follows it."""

    data: np.ndarray  # uint8, the whole text
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.starts)


def find_words(data: np.ndarray, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Starts (shifted by ``offset``) and lengths of the words of ``data``."""
    is_word = _IS_WORD[data]
    edges = np.diff(is_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return starts.astype(np.int64) + offset, (ends - starts).astype(np.int64)


def split_words(text: str | bytes | np.ndarray) -> Words:
    data = to_bytes(text)
    starts, lengths = find_words(data)
    return Words(data, starts, lengths)


def gather_chars(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """(n, width) int64 character codes of the words, END-padded (words longer than width are cut)."""
    if len(starts) == 0:
        return np.zeros((0, width), dtype=np.int64)
    column = np.arange(width)
    index = np.minimum(starts[:, None] + column, len(data) - 1)
    chars = data[index].astype(np.int64)
    chars[column[None, :] >= lengths[:, None]] = END
    return chars


def gather_separators(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """(n, width) codes of the characters right after each word, up to the next word (END-padded)."""
    if len(starts) == 0:
        return np.zeros((0, width), dtype=np.int64)
    column = np.arange(width)
    position = starts[:, None] + lengths[:, None] + column
    inside = position < len(data)
    chars = data[np.minimum(position, len(data) - 1)].astype(np.int64)
    # Stop at the next word: everything from the first word character on is padding.
    in_word = _IS_WORD[chars.astype(np.uint8)] | ~inside
    cut = np.cumsum(in_word, axis=1) > 0
    chars[cut] = END
    return chars
