import pytest
import torch

from hashhop.errors import HashHopError
from hashhop.lab.mixers import (
    MixerConfig,
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fast kernels need CUDA")
def test_fast_kernels_match_the_cpu_versions():
    torch.manual_seed(3)
    for name in ("deltanet", "mamba"):
        mixer = make_mixer(MixerConfig(name=name, d_model=64, n_heads=2))
        x = torch.randn(2, 128, 64)
        reference = mixer(x)
        fast = mixer.cuda()(x.cuda()).cpu()
        assert torch.allclose(fast, reference, atol=2e-3), name


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
