import json

import pytest

from hashhop.cli import main
from hashhop.errors import HashHopError
from hashhop.ltm.cost import gpus_needed, load_config, side_by_side


def test_llama_405b_figures_are_reproduced():
    cost = load_config("llama-3.1-405b")
    assert cost.kv_bytes_per_token == 516_096
    assert cost.decode_flops(1e8) == pytest.approx(8.26e14, rel=1e-3)
    assert cost.kv_bytes_per_token * 1e8 == pytest.approx(51.6e12, rel=1e-3)
    assert gpus_needed(cost.kv_bytes_per_token * 1e8, 80e9) == 646  # 645.1 H100s of 80e9 bytes, rounded up


def test_any_hf_config_and_its_defaults(tmp_path):
    path = tmp_path / "config.json"
    # No num_key_value_heads (plain multi-head attention), no head_dim (hidden / heads), fp32.
    path.write_text(json.dumps({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64, "torch_dtype": "float32"}))
    cost = load_config(str(path))
    assert cost.kv_bytes_per_token == 2 * 2 * 4 * 16 * 4
    assert "| memory per context token |" in side_by_side(cost, None, 1000, 80e9)


def test_bad_configs_are_one_line_errors(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    no_heads = tmp_path / "no_heads.json"
    no_heads.write_text('{"num_hidden_layers": 2, "num_attention_heads": 0, "hidden_size": 64}')
    for config in ("no-such-model", str(broken), str(no_heads)):
        with pytest.raises(HashHopError):
            load_config(config)
        assert main(["cost", "--config", config, "--no-ltm"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("hashhop cost: error:") and "\n" not in err


def test_cost_command_prints_both_side_by_side(capsys):
    assert main(["cost", "--context", "1M"]) == 0
    out = capsys.readouterr().out
    assert "516,096 B" in out and "builtin:ltm" in out and "x |" in out
