import copy

import pytest
import torch
import torch.nn.functional as F

from hashhop.errors import HashHopError
from hashhop.lab.mixers import (
    MixerConfig,
    _fla_delta_rule,
    _mamba_scan,
    delta_rule_chunkwise,
    delta_rule_recurrent,
    make_mixer,
    mixer_names,
    selective_scan,
    selective_scan_sequential,
)
from hashhop.lab.model import LM, ModelConfig


@pytest.mark.parametrize("name", ["attention", "sliding_window", "short_conv", "s4d", "linear_attention", "deltanet", "mamba", "hybrid", "ltm2"])
def test_every_mixer_is_causal_and_reports_its_state(name):
    torch.manual_seed(0)
    mixer = make_mixer(MixerConfig(name=name, d_model=32, n_heads=2, window=8, chunk=16))
    x = torch.randn(2, 40, 32)
    y = mixer(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 25] += 1.0
    assert torch.allclose(mixer(x2)[:, :25], y[:, :25], atol=1e-5)  # the future does not leak
    assert not torch.allclose(mixer(x2)[:, 25:], y[:, 25:])
    assert mixer.state_bytes(1000) > 0


def test_state_grows_with_length_only_for_full_attention():
    grows = {
        n: make_mixer(MixerConfig(name=n, d_model=32, n_heads=2)).state_bytes(10_000)
        > make_mixer(MixerConfig(name=n, d_model=32, n_heads=2)).state_bytes(100)
        for n in mixer_names()
    }
    assert grows == {
        "attention": True,
        "hybrid": True,
        "ltm2": True,  # its memory keeps a key and a value per byte (59 bytes), by design
        "sliding_window": False,
        "short_conv": False,
        "s4d": False,
        "linear_attention": False,
        "deltanet": False,
        "mamba": False,
    }


def test_chunkwise_deltanet_equals_the_recurrence():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 45, 8) for _ in range(3))
    k = torch.nn.functional.normalize(k, dim=-1)
    beta = torch.rand(2, 3, 45)
    for chunk in (1, 7, 16, 64):
        assert torch.allclose(delta_rule_chunkwise(q, k, v, beta, chunk), delta_rule_recurrent(q, k, v, beta), atol=1e-4)


def test_linear_attention_chunk_size_does_not_matter():
    torch.manual_seed(2)
    a = make_mixer(MixerConfig(name="linear_attention", d_model=32, n_heads=2, chunk=4))
    b = make_mixer(MixerConfig(name="linear_attention", d_model=32, n_heads=2, chunk=64))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 50, 32)
    assert torch.allclose(a(x), b(x), atol=1e-5)


def test_parallel_selective_scan_equals_the_sequential_one():
    torch.manual_seed(4)
    u, delta = torch.randn(2, 6, 37), torch.rand(2, 6, 37)
    a = -torch.rand(6, 5) * 3
    b, c, d = torch.randn(2, 5, 37), torch.randn(2, 5, 37), torch.randn(6)
    assert torch.allclose(selective_scan(u, delta, a, b, c, d), selective_scan_sequential(u, delta, a, b, c, d), atol=1e-5)


def test_selective_scan_matches_a_closed_form_for_constant_inputs():
    u = torch.ones(1, 1, 5)
    delta = torch.full((1, 1, 5), 0.5)
    a = torch.tensor([[-1.0]])
    b = torch.ones(1, 1, 5)
    c = torch.ones(1, 1, 5)
    y = selective_scan(u, delta, a, b, c, torch.zeros(1))
    decay = torch.exp(torch.tensor(-0.5))
    expected = [0.5 * sum(decay**i for i in range(t + 1)) for t in range(5)]
    assert torch.allclose(y.flatten(), torch.tensor(expected), atol=1e-6)


def _relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out.detach().double() - reference.detach().double()).norm() / reference.detach().double().norm())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fast kernels need CUDA")
def test_fast_kernel_fla_delta_rule_matches_the_cpu_version():
    fast = _fla_delta_rule()
    if fast is None:
        pytest.skip("flash-linear-attention is not installed")
    torch.manual_seed(3)
    batch, heads, length, dim = 2, 2, 200, 32  # not a multiple of fla's chunk
    q, k = (F.normalize(torch.randn(batch, heads, length, dim), dim=-1) for _ in range(2))
    v, beta = torch.randn(batch, heads, length, dim), torch.rand(batch, heads, length)
    reference = delta_rule_chunkwise(q.double(), k.double(), v.double(), beta.double(), 64)
    out = fast(*(x.cuda() for x in (q, k, v, beta)))
    assert out.dtype == torch.float32 and out.shape == reference.shape and torch.isfinite(out).all()
    assert _relative_error(out.cpu(), reference) < 2e-2  # fla computes in bf16
    # the mixer end to end, which picks the kernel on CUDA
    mixer = make_mixer(MixerConfig(name="deltanet", d_model=64, n_heads=2))
    x = torch.randn(2, 128, 64)
    reference = mixer(x)
    assert _relative_error(copy.deepcopy(mixer).cuda()(x.cuda()).cpu(), reference) < 2e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fast kernels need CUDA")
def test_fast_kernel_mamba_ssm_scan_matches_the_cpu_version():
    fast = _mamba_scan()
    if fast is None:
        pytest.skip("mamba-ssm is not installed")
    torch.manual_seed(4)
    batch, channels, states, length = 2, 16, 8, 100
    u, delta = torch.randn(batch, channels, length), torch.rand(batch, channels, length) * 0.5
    a = -torch.rand(channels, states) - 0.1
    b, c, d = torch.randn(batch, states, length), torch.randn(batch, states, length), torch.randn(channels)
    reference = selective_scan_sequential(*(x.double() for x in (u, delta, a, b, c, d)))
    out = fast(*(x.cuda() for x in (u, delta, a, b, c, d))).cpu()
    assert _relative_error(out, reference) < 1e-3
    mixer = make_mixer(MixerConfig(name="mamba", d_model=64, n_heads=2))
    x = torch.randn(2, 128, 64)
    reference = mixer(x)
    assert _relative_error(copy.deepcopy(mixer).cuda()(x.cuda()).cpu(), reference) < 1e-3


def test_bad_mixer_configs():
    with pytest.raises(HashHopError, match="unknown mixer"):
        make_mixer(MixerConfig(name="transformer-xl"))
    with pytest.raises(HashHopError, match="not divisible"):
        make_mixer(MixerConfig(d_model=30, n_heads=4))
    with pytest.raises(HashHopError, match="unknown positions"):
        make_mixer(MixerConfig(positions="sinusoidal"))
    model = LM(ModelConfig(mixer=MixerConfig(d_model=16, n_heads=2, positions="none"), vocab_size=10, max_len=8))
    with pytest.raises(HashHopError, match="longer than the 8 learned positions"):
        model(torch.zeros(1, 9, dtype=torch.long))
