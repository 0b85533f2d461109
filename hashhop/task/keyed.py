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
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic is intended); a new array."""
    z = np.array(z, dtype=U64)
    _mix64_inplace(z, np.empty_like(z))
    return z


def _mix64_inplace(z: np.ndarray, tmp: np.ndarray) -> None:
    """:func:`mix64` of ``z`` in place, with ``tmp`` (same shape) as scratch: no temporaries, so
    large arrays cost no allocations or page faults and small ones stay in cache."""
    np.right_shift(z, _S30, out=tmp)
    z ^= tmp
    z *= _MC1
    np.right_shift(z, _S27, out=tmp)
    z ^= tmp
    z *= _MC2
    np.right_shift(z, _S31, out=tmp)
    z ^= tmp


_S30, _S27, _S31, _MC1, _MC2 = U64(30), U64(27), U64(31), U64(_C1), U64(_C2)
# Arrays are processed in blocks of this many elements: a handful of uint64 scratch arrays of this
# length stay in a core's L2 cache, and NumPy's per-call overhead stays small next to the work.
_BLOCK = 1 << 15


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
        self._tables: list[np.ndarray] | None = None

    # Halves of at most this many bits: each round function is tabulated (2**bits entries) once a
    # call is large enough to repay it, and a round is then one lookup and one xor.
    TABLE_BITS = 16

    def _round_tables(self, n: int) -> list[np.ndarray] | None:
        """Round ``r``'s function on every possible input, as int64 (inputs and outputs < 2**16)."""
        if self._tables is None and self._lo_bits <= self.TABLE_BITS and 4 * n >= 1 << self._lo_bits:
            tables = []
            for r, key in enumerate(self._keys):
                f = np.arange(1 << (self._lo_bits if r % 2 == 0 else self._hi_bits), dtype=U64)
                f ^= key
                _mix64_inplace(f, np.empty_like(f))
                f &= self._hi_mask if r % 2 == 0 else self._lo_mask
                tables.append(f.view(np.int64))
            self._tables = tables
        return self._tables

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        return self._feistel(x, list(range(self.ROUNDS)))

    def _decrypt(self, y: np.ndarray) -> np.ndarray:
        return self._feistel(y, list(reversed(range(self.ROUNDS))))

    def _feistel(self, x: np.ndarray, rounds: list[int]) -> np.ndarray:
        """The rounds ``rounds`` of the network on ``x`` (a uint64 array, overwritten with the result)."""
        tables = self._round_tables(x.size)
        if tables is not None:
            return self._feistel_tables(x, rounds, tables)
        lo_bits = U64(self._lo_bits)
        hi_all, lo_all, f_all, tmp_all = (np.empty(min(x.size, _BLOCK), dtype=U64) for _ in range(4))
        for start in range(0, x.size, _BLOCK):
            block = x[start : start + _BLOCK]
            m = block.size
            hi, lo, f, tmp = hi_all[:m], lo_all[:m], f_all[:m], tmp_all[:m]
            np.right_shift(block, lo_bits, out=hi)
            np.bitwise_and(block, self._lo_mask, out=lo)
            for r in rounds:
                if r % 2 == 0:  # hi ^= mix64(lo ^ key) & hi_mask
                    np.bitwise_xor(lo, self._keys[r], out=f)
                    _mix64_inplace(f, tmp)
                    f &= self._hi_mask
                    hi ^= f
                else:  # lo ^= mix64(hi ^ key) & lo_mask
                    np.bitwise_xor(hi, self._keys[r], out=f)
                    _mix64_inplace(f, tmp)
                    f &= self._lo_mask
                    lo ^= f
            np.left_shift(hi, lo_bits, out=block)
            block |= lo
        return x

    def _feistel_tables(self, x: np.ndarray, rounds: list[int], tables: list[np.ndarray]) -> np.ndarray:
        """:meth:`_feistel` with tabulated round functions, in int64 (the values are < 2**32)."""
        lo_bits = np.int64(self._lo_bits)
        lo_mask = np.int64(self._lo_mask)
        xs = x.view(np.int64)
        hi_all, lo_all, f_all = (np.empty(min(x.size, _BLOCK), dtype=np.int64) for _ in range(3))
        for start in range(0, x.size, _BLOCK):
            block = xs[start : start + _BLOCK]
            m = block.size
            hi, lo, f = hi_all[:m], lo_all[:m], f_all[:m]
            np.right_shift(block, lo_bits, out=hi)
            np.bitwise_and(block, lo_mask, out=lo)
            for r in rounds:
                if r % 2 == 0:  # hi ^= F_r(lo); the indices are in range, so clip only skips the check
                    np.take(tables[r], lo, out=f, mode="clip")
                    hi ^= f
                else:
                    np.take(tables[r], hi, out=f, mode="clip")
                    lo ^= f
            np.left_shift(hi, lo_bits, out=block)
            block |= lo
        return x

    def _walk(self, x: np.ndarray, step) -> np.ndarray:
        y = step(np.array(x, dtype=U64).ravel())
        size = U64(self.size)
        outside = np.flatnonzero(y >= size)
        while outside.size:
            y[outside] = step(y[outside])
            outside = outside[y[outside] >= size]
        return y.reshape(np.shape(x))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Image of each index in ``x`` (uint64 array of values < size)."""
        return self._walk(x, self._encrypt)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return self._walk(y, self._decrypt)


# SWAR constants: 8 digits of a hash live in the 8 bytes of one uint64 word.
_ONES = U64(0x0101010101010101)
_LANES16 = U64(0x0000FFFF0000FFFF)
_BYTES04 = U64(0x000000FF000000FF)
_LANES16_AT8 = U64(0x0000FFFF0000FFFF << 8)
_BYTES15, _BYTES26, _BYTES37 = U64(0x000000FF000000FF << 8), U64(0x000000FF000000FF << 16), U64(0x000000FF000000FF << 24)
_S8, _S16 = U64(8), U64(16)


def _digits4(z: np.ndarray, radix: np.uint64) -> np.ndarray:
    """4 digits in [0, radix) from 64 random bits, at bytes 0, 1, 4, 5 (16 bits per digit keeps the
    bias of the multiply-shift reduction below 1e-3, and the additions in the rounds wash it out).
    The 16-bit lanes 0, 1, 2, 3 of ``z`` give bytes 0, 1, 4, 5: digit ``(lane * radix) >> 16``.
    (The reference definition; :meth:`HashFamily._round_digits` computes the same in place.)"""
    lo = ((z & _LANES16) * radix >> U64(16)) & _BYTES04
    hi = (((z >> U64(16)) & _LANES16) * radix >> U64(16)) & _BYTES04
    return lo | (hi << U64(8))


_LOW_TABLES: dict[tuple, np.ndarray] = {}


class HashFamily:
    """Maps distinct indices to distinct random-looking hashes of ``length`` characters over ``alphabet``.

    Large hash spaces: the hash is a vector of base-``radix`` digits packed 8 per uint64 word; the
    index is written into it injectively (``floor(log2 radix)`` bits per digit), then a generalised
    Feistel network adds (mod ``radix``, digit by digit) keyed pseudorandom digits derived from the
    other words. Each round is invertible, so the whole map is injective.
    Small hash spaces (``radix**length <= 2**32``): a keyed permutation of the whole space, so every
    possible hash is usable.

    The arithmetic runs in place on blocks of :data:`_BLOCK` indices (no temporaries), and
    :meth:`range_digits` writes a contiguous range of indices without computing their injection
    digit by digit; both give exactly the digits of the reference definition (``_digits4`` and the
    round structure above), which the tests check against a verbatim copy of it.
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
        self._word_masks = [U64((1 << (8 * nd)) - 1) for nd in self._word_digits]
        self._radix_u8 = np.uint8(self.radix)
        self._radix_u64 = U64(self.radix)
        # range_digits: the injection of every index below 2**(k*bits) (k digits), so a block of
        # consecutive indices is that table's slice OR'd with the (constant) injection of its high digits.
        k = max(1, round(15 / self._bits_per_digit))  # 2**12 to 2**16 indices
        self._low_span = 1 << (k * self._bits_per_digit)

    # -- public ------------------------------------------------------------------------------
    def digits(self, index: np.ndarray) -> np.ndarray:
        """(n, length) uint8 array of digits in [0, radix) for each index (uint64, < capacity)."""
        index = np.asarray(index, dtype=U64).ravel()
        out = np.empty((index.size, self.length), dtype=np.uint8)
        if self._small is not None:
            self._small_digits(index, out)
            return out
        scratch = self._scratch(min(index.size, _BLOCK))
        for start in range(0, index.size, _BLOCK):
            block = index[start : start + _BLOCK]
            words = scratch[0][:, : block.size]
            self._inject_into(block, words, scratch[1][: block.size])
            self._mix_words(words, scratch, out[start : start + block.size])
        return out

    def range_digits(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """``digits(arange(start, stop))``, written into ``out`` ((stop - start, length) uint8) when given."""
        n = stop - start
        if out is None:
            out = np.empty((n, self.length), dtype=np.uint8)
        if self._small is not None or n < self._low_span // 4:  # small: the table would cost more than it saves
            out[:] = self.digits(np.arange(start, stop, dtype=U64))
            return out
        table, span = self._low_injection(), self._low_span
        scratch = self._scratch(min(n, _BLOCK))
        at = start
        while at < stop:
            base = at - at % span
            upto = min(stop, at + _BLOCK, base + span)  # a block never crosses a multiple of span
            m = upto - at
            words = scratch[0][:, :m]
            high = self._inject(np.array([base], dtype=U64))[:, 0]
            for w in range(len(words)):
                np.bitwise_or(table[w, at - base : upto - base], high[w], out=words[w])
            self._mix_words(words, scratch, out[at - start : upto - start])
            at = upto
        return out

    def _low_injection(self) -> np.ndarray:
        """The injection of every index below ``_low_span`` (independent of the seed: shared)."""
        shape = (self._bits_per_digit, tuple(self._word_digits), self._low_span)
        table = _LOW_TABLES.get(shape)
        if table is None:
            table = self._inject(np.arange(self._low_span, dtype=U64))
            table.flags.writeable = False
            if len(_LOW_TABLES) >= 16:
                _LOW_TABLES.clear()
            _LOW_TABLES[shape] = table
        return table

    def to_text(self, digits: np.ndarray, scratch: np.ndarray | None = None) -> None:
        """Map digits (a contiguous uint8 array) to the alphabet's ASCII codes, in place; ``scratch``:
        a uint8 array of at least twice ``digits.size`` to work in (else allocated).

        Alphabets made of a few runs of consecutive characters (all the named ones: letters, lower,
        alnum, hex, digits) are mapped by arithmetic on bytes, a few vectorised passes; others
        through ``bytes.translate``."""
        if not digits.flags.c_contiguous:
            raise ValueError("to_text maps a contiguous array in place")
        runs = self._runs
        if len(runs) > 4:
            table = self.alphabet.encode("ascii") + bytes(256 - self.radix)
            digits[...] = np.frombuffer(digits.tobytes().translate(table), dtype=np.uint8).reshape(digits.shape)
            return
        flat = digits.reshape(-1)
        if scratch is None or scratch.size < 2 * flat.size:
            scratch = np.empty(2 * flat.size, dtype=np.uint8)
        shift, step = scratch[: flat.size], scratch[flat.size : 2 * flat.size]
        # code = digit + offset of its run = digit + offset_0 + the steps between runs up to its own
        # (uint8 arithmetic wraps, so the steps are taken mod 256)
        shift[:] = runs[0][1] % 256
        for (first, offset), (_, previous) in zip(runs[1:], runs[:-1]):
            np.greater_equal(flat, np.uint8(first), out=step.view(np.bool_))
            step *= np.uint8((offset - previous) % 256)
            shift += step
        flat += shift

    @property
    def _runs(self) -> list[tuple[int, int]]:
        """``(first digit, code - digit)`` of each run of consecutive codes in the alphabet."""
        codes = self.alphabet.encode("ascii")
        return [(d, codes[d] - d) for d in range(len(codes)) if d == 0 or codes[d] != codes[d - 1] + 1]

    def strings(self, index) -> list[str]:
        """The hashes as Python strings (for small numbers of indices)."""
        table = np.frombuffer(self.alphabet.encode("ascii"), dtype=np.uint8)
        return [bytes(row).decode("ascii") for row in table[self.digits(np.asarray(index, dtype=U64))]]

    # -- small spaces ------------------------------------------------------------------------
    def _small_digits(self, index: np.ndarray, out: np.ndarray) -> None:
        value = self._small(index)  # < 2**32: the digits in uint32 arithmetic
        value = value.astype(np.uint32)
        digit = np.empty_like(value)
        radix = np.uint32(self.radix)
        for pos in range(self.length - 1, -1, -1):
            np.divmod(value, radix, out=(value, digit))
            out[:, pos] = digit

    # -- large spaces ------------------------------------------------------------------------
    def _scratch(self, m: int) -> tuple[np.ndarray, ...]:
        """(words, acc, f, tmp) for blocks of up to ``m`` indices."""
        m = max(m, 1)
        return np.empty((len(self._word_digits), m), dtype=U64), *(np.empty(m, dtype=U64) for _ in range(3))

    def _inject(self, index: np.ndarray) -> np.ndarray:
        """``(n_words, n)``: the index's bits in the digit bytes, ``bits_per_digit`` per digit, low words first."""
        words = np.zeros((len(self._word_digits), index.size), dtype=U64)
        self._inject_into(index, words, np.empty(index.size, dtype=U64))
        return words

    def _inject_into(self, index: np.ndarray, words: np.ndarray, tmp: np.ndarray) -> None:
        """Write the index's bits into the digit bytes of ``words`` (zeroed here), ``bits_per_digit``
        per digit, the lowest bits into the last word's first byte. Digits above the largest index's
        highest bit are zero, so they are skipped."""
        b = self._bits_per_digit
        digit_mask = U64((1 << b) - 1)
        words[:] = 0
        top = int(index.max()).bit_length() if index.size else 0
        shift = 0
        for w in range(len(self._word_digits) - 1, -1, -1):
            for d in range(self._word_digits[w]):
                if shift < min(64, top):
                    np.right_shift(index, U64(shift), out=tmp)
                    tmp &= digit_mask
                    tmp <<= U64(8 * d)
                    words[w] |= tmp
                shift += b

    def _mix_words(self, words: np.ndarray, scratch: tuple[np.ndarray, ...], out: np.ndarray) -> None:
        """The rounds of the network on ``words`` (``(n_words, m)``, in place), then the digits into ``out`` ((m, length) uint8)."""
        m = words.shape[1]
        acc, f, tmp = (a[:m] for a in scratch[1:])
        n_words = len(words)
        radix = self._radix_u64
        for r, key in enumerate(self._keys):
            target = r % n_words
            first = True
            for w in range(n_words):
                if w == target:
                    continue
                if first:  # acc = mix64(words[w] ^ key)
                    np.bitwise_xor(words[w], key, out=acc)
                    first = False
                else:  # acc = mix64(acc ^ words[w])
                    acc ^= words[w]
                _mix64_inplace(acc, tmp)
            # f = _digits4(acc): lanes 0, 2 -> bytes 0, 4; lanes 1, 3 -> bytes 1, 5
            np.bitwise_and(acc, _LANES16, out=f)
            f *= radix
            f >>= _S16
            f &= _BYTES04
            np.right_shift(acc, _S16, out=tmp)
            tmp &= _LANES16
            tmp *= radix
            tmp >>= _S8
            tmp &= _BYTES15
            f |= tmp
            if self._word_digits[target] > 4:
                # f |= _digits4(mix64(acc + key)) << 16: lanes 0, 2 -> bytes 2, 6; lanes 1, 3 -> bytes 3, 7
                acc += key
                _mix64_inplace(acc, tmp)
                np.bitwise_and(acc, _LANES16, out=tmp)
                tmp *= radix
                tmp &= _BYTES26
                f |= tmp
                np.right_shift(acc, _S8, out=tmp)
                tmp &= _LANES16_AT8
                tmp *= radix
                tmp &= _BYTES37
                f |= tmp
            else:  # bytes 4, 5 -> 2, 3
                np.right_shift(f, _S16, out=tmp)
                tmp &= U64(0xFFFF0000)
                f &= U64(0xFFFF)
                f |= tmp
            if self._word_digits[target] < 8:
                f &= self._word_masks[target]
            # words[target] += f, digit by digit mod radix: in bytes, s - radix wraps above s when s < radix
            s8 = words[target].view(np.uint8)
            s8 += f.view(np.uint8)
            np.subtract(s8, self._radix_u8, out=tmp.view(np.uint8))
            np.minimum(s8, tmp.view(np.uint8), out=s8)
        # Word by word (a transposing copy of all of them at once is 4x slower in NumPy).
        if self.length == 8 * n_words:
            packed = out.view(U64)
        else:
            packed = np.empty((m, n_words), dtype=U64)
        for w in range(n_words):
            packed[:, w] = words[w]
        if self.length != 8 * n_words:
            np.take(packed.view(np.uint8), self._columns, axis=1, out=out)
