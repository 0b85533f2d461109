import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashhop.task.keyed import HashFamily, KeyedPermutation, derive_keys
from hashhop.task.spec import ALPHABETS


@given(size=st.integers(1, 5000), seed=st.integers(0, 2**70))
@settings(max_examples=60, deadline=None)
def test_permutation_is_a_bijection_with_inverse(size, seed):
    perm = KeyedPermutation(size, seed, "lines")
    x = np.arange(size, dtype=np.uint64)
    y = perm(x)
    assert np.array_equal(np.sort(y), x)
    assert np.array_equal(perm.inverse(y), x)


def test_keys_differ_by_seed_and_purpose():
    assert derive_keys(1, "hash", 4) != derive_keys(2, "hash", 4)
    assert derive_keys(1, "hash", 4) != derive_keys(1, "lines", 4)
    assert derive_keys(2**64 + 1, "hash", 4) != derive_keys(1, "hash", 4)


def test_permutation_looks_random():
    # Over many seeds: each element lands first about equally often, fixed points are rare, no trend.
    size, seeds = 50, 2000
    first = np.zeros(size)
    correlations = []
    for seed in range(seeds):
        p = KeyedPermutation(size, seed, "queries")(np.arange(size, dtype=np.uint64)).astype(float)
        first[int(p[0])] += 1
        correlations.append(np.corrcoef(p, np.arange(size))[0, 1])
    expected = seeds / size
    chi2 = ((first - expected) ** 2 / expected).sum()
    assert chi2 < 100  # 49 degrees of freedom: p < 1e-4 beyond this
    assert abs(np.mean(correlations)) < 0.02


@given(
    alphabet=st.sampled_from(sorted(ALPHABETS.values()) + ["ab", "xyz"]),
    length=st.integers(1, 24),
    seed=st.integers(0, 2**63),
)
@settings(max_examples=80, deadline=None)
def test_hashes_are_distinct_and_in_the_alphabet(alphabet, length, seed):
    family = HashFamily(alphabet, length, seed)
    count = min(family.capacity, 20_000)
    digits = family.digits(np.arange(count, dtype=np.uint64))
    assert digits.shape == (count, length)
    assert digits.max() < len(alphabet)
    assert len({row.tobytes() for row in digits}) == count
    if family.capacity == family.space:  # small spaces use every hash
        assert len(family.strings(np.arange(min(count, 5)))) == min(count, 5)


def test_small_space_is_used_completely():
    family = HashFamily("abc", 3, 7)
    assert family.capacity == 27
    assert sorted(family.strings(np.arange(27))) == sorted(a + b + c for a in "abc" for b in "abc" for c in "abc")


@pytest.mark.parametrize(
    "alphabet, length",
    [
        ("letters", 16),
        ("letters", 8),
        ("letters", 6),
        ("letters", 12),
        ("letters", 20),
        ("hex", 9),
        ("hex", 12),
        ("digits", 11),
        ("alnum", 24),
    ],
)
def test_hash_characters_are_uniform(alphabet, length):
    family = HashFamily(ALPHABETS[alphabet], length, 3)
    radix = len(ALPHABETS[alphabet])
    digits = family.digits(np.arange(100_000, dtype=np.uint64))
    for position in range(length):
        counts = np.bincount(digits[:, position], minlength=radix)
        expected = len(digits) / radix
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < radix + 8 * np.sqrt(2 * radix), position  # ~5.6 standard deviations of chi-square
    # consecutive indices give unrelated hashes: about 1/radix of positions agree
    agree = (digits[1:] == digits[:-1]).mean()
    assert abs(agree - 1 / radix) < 0.003


# -- the optimised arithmetic against the original definition -------------------------------------
# keyed.py computes the hashes and permutations in place, in blocks, with tabulated round functions
# and a table for the injection of consecutive indices; these are the original, straightforward
# definitions (verbatim), and every path must give exactly their values: the pinned samples depend on it.
_MASK64 = (1 << 64) - 1
U64 = np.uint64


def reference_mix64(z):
    z = z ^ (z >> U64(30))
    z *= U64(0xBF58476D1CE4E5B9)
    z ^= z >> U64(27)
    z *= U64(0x94D049BB133111EB)
    z ^= z >> U64(31)
    return z


def reference_permutation(size, seed, purpose, x, inverse=False):
    bits = max(2, (size - 1).bit_length())
    hi_bits, lo_bits = bits // 2, bits - bits // 2
    lo_mask, hi_mask = U64((1 << lo_bits) - 1), U64((1 << hi_bits) - 1)
    keys = [U64(k) for k in derive_keys(seed, purpose, 6)]

    def step(v):
        hi, lo = v >> U64(lo_bits), v & lo_mask
        for r in reversed(range(6)) if inverse else range(6):
            if r % 2 == 0:
                hi ^= reference_mix64(lo ^ keys[r]) & hi_mask
            else:
                lo ^= reference_mix64(hi ^ keys[r]) & lo_mask
        return (hi << U64(lo_bits)) | lo

    y = step(np.asarray(x, dtype=U64).copy())
    outside = np.flatnonzero(y >= U64(size))
    while outside.size:
        y[outside] = step(y[outside])
        outside = outside[y[outside] >= U64(size)]
    return y


def reference_digits(alphabet, length, seed, index):
    index = np.asarray(index, dtype=U64)
    radix = len(alphabet)
    if radix**length <= 1 << 32:
        value = reference_permutation(radix**length, seed, "hash", index)
        out = np.empty((index.size, length), dtype=np.uint8)
        for pos in range(length - 1, -1, -1):
            out[:, pos] = value % U64(radix)
            value //= U64(radix)
        return out
    b = radix.bit_length() - 1
    n_words = max(2, -(-length // 8))
    word_digits = [length // n_words + (1 if w < length % n_words else 0) for w in range(n_words)]
    keys = [U64(k) for k in derive_keys(seed, "hash", 4 if n_words == 2 else 3 * n_words)]
    words, shift = [], 0
    for nd in reversed(word_digits):
        word = np.zeros_like(index)
        for d in range(nd):
            if shift < 64:
                word |= ((index >> U64(shift)) & U64((1 << b) - 1)) << U64(8 * d)
            shift += b
        words.append(word)
    words.reverse()
    lanes, bytes04, ones = U64(0x0000FFFF0000FFFF), U64(0x000000FF000000FF), U64(0x0101010101010101)

    def digits4(z):
        lo = ((z & lanes) * U64(radix) >> U64(16)) & bytes04
        hi = (((z >> U64(16)) & lanes) * U64(radix) >> U64(16)) & bytes04
        return lo | (hi << U64(8))

    for r, key in enumerate(keys):
        target, acc = r % n_words, None
        for w in range(n_words):
            if w != target:
                acc = reference_mix64(words[w] ^ key) if acc is None else reference_mix64(acc ^ words[w])
        f = digits4(acc)
        if word_digits[target] > 4:
            f |= digits4(reference_mix64(acc + key)) << U64(16)
        else:
            f = (f & U64(0xFFFF)) | ((f >> U64(16)) & U64(0xFFFF0000))
        f &= U64((1 << (8 * word_digits[target])) - 1)
        s = words[target] + f
        s -= ((s + U64(0x80 - radix) * ones) >> U64(7) & ones) * U64(radix)
        words[target] = s
    columns = [8 * w + d for w, nd in enumerate(word_digits) for d in range(nd)]
    return np.stack(words, axis=1).view(np.uint8)[:, columns]


@given(
    alphabet=st.sampled_from(sorted(ALPHABETS.values()) + ["ab", "xyz", "zyxw", "aZ09", "".join(chr(c) for c in range(33, 127) if chr(c) not in " ='\"\\")]),
    length=st.integers(1, 40),
    seed=st.integers(0, 2**63),
    data=st.data(),
)
@settings(max_examples=150, deadline=None)
def test_hashes_equal_the_reference_definition(alphabet, length, seed, data):
    family = HashFamily(alphabet, length, seed)
    cap = family.capacity
    index = np.array(data.draw(st.lists(st.integers(0, cap - 1), min_size=1, max_size=30)) + [0, cap - 1], dtype=np.uint64)
    assert np.array_equal(family.digits(index), reference_digits(alphabet, length, seed, index))
    # consecutive indices (range_digits' table of injections), anywhere in the space, over blocks
    count = min(cap, data.draw(st.sampled_from([1, 7, 5000, 70_000])))
    start = data.draw(st.integers(0, cap - count))
    expected = reference_digits(alphabet, length, seed, np.arange(start, start + count, dtype=np.uint64))
    assert np.array_equal(family.range_digits(start, start + count), expected)
    # as text
    text = expected.copy()
    family.to_text(text)
    assert np.array_equal(text, np.frombuffer(alphabet.encode(), dtype=np.uint8)[expected])


@pytest.mark.parametrize("size", [1, 2, 3, 1000, 5000, 2**20 - 3, 2**31 + 7, 2**32, 10**15, 2**64 - 5])
def test_permutations_equal_the_reference_definition(size):
    # sizes up to 2**32 use tabulated round functions once a call is large enough; larger ones compute
    rng = np.random.default_rng(size % 1000)
    x = (rng.random(40_000) * size).astype(np.uint64) % np.uint64(size)
    for seed in (0, 2**62 + 5):
        perm = KeyedPermutation(size, seed, "lines")
        y = perm(x)
        assert np.array_equal(y, reference_permutation(size, seed, "lines", x))
        assert np.array_equal(perm.inverse(y), x)
        assert np.array_equal(perm(x[:3]), y[:3])  # small calls, the tables built
        assert np.array_equal(KeyedPermutation(size, seed, "lines")(x[:3]), y[:3])  # and computed
