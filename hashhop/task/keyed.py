"""Keyed pseudorandom permutations: the source of every random choice in a HashHop sample.

Everything random in a sample (the hashes, the order of the prompt lines, which chains are queried)
is a keyed permutation of plain indices. That gives four properties at once:

* collision-free by construction: distinct indices map to distinct hashes, nothing to check;
* random access: line ``p`` of a 1B-token prompt is computed without the lines before it, so
  generation streams in bounded memory and the position of any link is known analytically;
* reproducible: only 64-bit integer arithmetic of our own, so the same seed gives the same bytes on
  every machine and every NumPy version;
* fast: each step is a handful of vectorised uint64 operations.

The mixing function is SplitMix64's finaliser; the permutations are Feistel networks (a bijection
for any round function), with cycle walking to restrict them to an arbitrary domain size.
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB

U64 = np.uint64


def splitmix64(state: int) -> tuple[int, int]:
    """One SplitMix64 step on a Python int: returns (new_state, output)."""
    state = (state + _GOLDEN) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * _C1) & _MASK64
    z = ((z ^ (z >> 27)) * _C2) & _MASK64
    return state, z ^ (z >> 31)


def derive_keys(seed: int, purpose: str, count: int) -> list[int]:
    """``count`` 64-bit keys for one purpose ("hash", "lines", ...), independent across purposes."""
    state = seed & _MASK64
    # Fold the high bits of big seeds and the purpose name in, so every (seed, purpose) differs.
    for word in [seed >> 64, *purpose.encode()]:
        state, out = splitmix64(state ^ (word & _MASK64))
        state = out
    keys = []
    for _ in range(count):
        state, out = splitmix64(state)
        keys.append(out)
    return keys


def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic is intended)."""
    z = z ^ (z >> U64(30))
    z *= U64(_C1)
    z ^= z >> U64(27)
    z *= U64(_C2)
    z ^= z >> U64(31)
    return z


class KeyedPermutation:
    """A keyed bijection of ``[0, size)``: a balanced Feistel network on the enclosing power of two,
    restricted to ``size`` by cycle walking (values that land outside are encrypted again)."""

    ROUNDS = 6

    def __init__(self, size: int, seed: int, purpose: str) -> None:
        if size < 1:
            raise ValueError("a permutation needs a domain of at least one element")
        self.size = size
        bits = max(2, (size - 1).bit_length())
        self._hi_bits = bits // 2
        self._lo_bits = bits - self._hi_bits
        self._lo_mask = U64((1 << self._lo_bits) - 1)
        self._hi_mask = U64((1 << self._hi_bits) - 1)
        self._keys = [U64(k) for k in derive_keys(seed, purpose, self.ROUNDS)]

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        hi = x >> U64(self._lo_bits)
        lo = x & self._lo_mask
        for r, key in enumerate(self._keys):
            if r % 2 == 0:
                hi ^= mix64(lo ^ key) & self._hi_mask
            else:
                lo ^= mix64(hi ^ key) & self._lo_mask
        return (hi << U64(self._lo_bits)) | lo

    def _decrypt(self, y: np.ndarray) -> np.ndarray:
        hi = y >> U64(self._lo_bits)
        lo = y & self._lo_mask
        for r in reversed(range(self.ROUNDS)):
            key = self._keys[r]
            if r % 2 == 0:
                hi ^= mix64(lo ^ key) & self._hi_mask
            else:
                lo ^= mix64(hi ^ key) & self._lo_mask
        return (hi << U64(self._lo_bits)) | lo

    def _walk(self, x: np.ndarray, step) -> np.ndarray:
        y = step(np.asarray(x, dtype=U64).copy())
        size = U64(self.size)
        outside = np.flatnonzero(y >= size)
        while outside.size:
            y[outside] = step(y[outside])
            outside = outside[y[outside] >= size]
        return y

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Image of each index in ``x`` (uint64 array of values < size)."""
        return self._walk(x, self._encrypt)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return self._walk(y, self._decrypt)


# SWAR constants: 8 digits of a hash live in the 8 bytes of one uint64 word.
_ONES = U64(0x0101010101010101)
_LANES16 = U64(0x0000FFFF0000FFFF)
_BYTES04 = U64(0x000000FF000000FF)


def _digits4(z: np.ndarray, radix: np.uint64) -> np.ndarray:
    """4 digits in [0, radix) from 64 random bits, at bytes 0, 1, 4, 5 (16 bits per digit keeps the
    bias of the multiply-shift reduction below 1e-3, and the additions in the rounds wash it out)."""
    lo = ((z & _LANES16) * radix >> U64(16)) & _BYTES04
    hi = (((z >> U64(16)) & _LANES16) * radix >> U64(16)) & _BYTES04
    return lo | (hi << U64(8))


class HashFamily:
    """Maps distinct indices to distinct random-looking hashes of ``length`` characters over ``alphabet``.

    Large hash spaces: the hash is a vector of base-``radix`` digits packed 8 per uint64 word; the
    index is written into it injectively (``floor(log2 radix)`` bits per digit), then a generalised
    Feistel network adds (mod ``radix``, digit by digit) keyed pseudorandom digits derived from the
    other words. Each round is invertible, so the whole map is injective.
    Small hash spaces (``radix**length <= 2**32``): a keyed permutation of the whole space, so every
    possible hash is usable.
    """

    SMALL_SPACE = 1 << 32

    def __init__(self, alphabet: str, length: int, seed: int) -> None:
        self.alphabet = alphabet
        self.length = length
        self.radix = len(alphabet)
        self.space = self.radix**length
        if self.space <= self.SMALL_SPACE:
            self.capacity = self.space
            self._small = KeyedPermutation(self.space, seed, "hash")
            return
        self._small = None
        self._bits_per_digit = self.radix.bit_length() - 1
        self.capacity = min(1 << (self._bits_per_digit * length), 1 << 64)
        n_words = max(2, -(-length // 8))
        self._word_digits = [length // n_words + (1 if w < length % n_words else 0) for w in range(n_words)]
        self._rounds = 4 if n_words == 2 else 3 * n_words
        self._keys = [U64(k) for k in derive_keys(seed, "hash", self._rounds)]
        # Byte columns of the packed words that hold real digits, in hash order.
        self._columns = np.array([8 * w + d for w, nd in enumerate(self._word_digits) for d in range(nd)], dtype=np.intp)

    def digits(self, index: np.ndarray) -> np.ndarray:
        """(n, length) uint8 array of digits in [0, radix) for each index (uint64, < capacity)."""
        index = np.asarray(index, dtype=U64)
        if self._small is not None:
            value = self._small(index)
            out = np.empty((index.size, self.length), dtype=np.uint8)
            radix = U64(self.radix)
            for pos in range(self.length - 1, -1, -1):
                out[:, pos] = value % radix
                value //= radix
            return out
        words = self._inject(index)
        radix = U64(self.radix)
        add = U64(0x80 - self.radix) * _ONES
        n_words = len(words)
        for r, key in enumerate(self._keys):
            target = r % n_words
            acc = None
            for w in range(n_words):
                if w != target:
                    acc = mix64(words[w] ^ key) if acc is None else mix64(acc ^ words[w])
            f = _digits4(acc, radix)
            if self._word_digits[target] > 4:
                f |= _digits4(mix64(acc + key), radix) << U64(16)  # bytes 2, 3, 6, 7
            else:
                f = (f & U64(0xFFFF)) | ((f >> U64(16)) & U64(0xFFFF0000))  # bytes 4, 5 -> 2, 3
            f &= U64((1 << (8 * self._word_digits[target])) - 1)
            s = words[target] + f
            # Per byte: s >= radix  <=>  s + (0x80 - radix) has its top bit set (no carries: s < 2*radix <= 0x80 + ...).
            s -= ((s + add) >> U64(7) & _ONES) * radix
            words[target] = s
        packed = np.stack(words, axis=1).view(np.uint8)
        if packed.shape[1] == self.length:
            return packed
        return packed[:, self._columns]

    def _inject(self, index: np.ndarray) -> list[np.ndarray]:
        """Write the index's bits into the digit bytes, ``bits_per_digit`` per digit, low words first."""
        b = self._bits_per_digit
        digit_mask = U64((1 << b) - 1)
        words = []
        shift = 0
        for nd in reversed(self._word_digits):
            word = np.zeros_like(index)
            for d in range(nd):
                if shift < 64:
                    word |= ((index >> U64(shift)) & digit_mask) << U64(8 * d)
                shift += b
            words.append(word)
        words.reverse()
        return words

    def strings(self, index) -> list[str]:
        """The hashes as Python strings (for small numbers of indices)."""
        table = np.frombuffer(self.alphabet.encode("ascii"), dtype=np.uint8)
        return [bytes(row).decode("ascii") for row in table[self.digits(np.asarray(index, dtype=U64))]]
