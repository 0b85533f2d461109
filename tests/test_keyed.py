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
