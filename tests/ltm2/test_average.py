"""benchmarks/ltm2_average.py: the mean of LTM-2 weight files, each file named in the output; bad input, one line."""

import json
import os
import subprocess
import sys

import torch

from hashhop.checkpoint import read_checkpoint_meta, save_checkpoint
from hashhop.ltm2.config import WEIGHTS
from hashhop.ltm2.load import load_ltm2

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "ltm2_average.py")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def test_average_of_weight_files_is_their_mean(tmp_path):
    shifted = load_ltm2(WEIGHTS)
    with torch.no_grad():
        for tensor in shifted.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.01)
    other = tmp_path / "other.safetensors"
    save_checkpoint(str(other), shifted, None, read_checkpoint_meta(WEIGHTS))
    out = tmp_path / "soup.safetensors"
    done = run(WEIGHTS, str(other), "--out", str(out))
    assert done.returncode == 0, done.stderr
    soup, first = load_ltm2(str(out)).state_dict(), load_ltm2(WEIGHTS).state_dict()
    for key, tensor in soup.items():
        assert torch.allclose(tensor, (first[key] + shifted.state_dict()[key]) / 2, atol=1e-6), key
    assert not torch.equal(soup["blocks.0.mixer.key.weight"], first["blocks.0.mixer.key.weight"])
    named = read_checkpoint_meta(str(out))["averaged_from"]
    assert [n["file"] for n in named] == ["ltm2.safetensors", "other.safetensors"] and json.loads(done.stdout)["out"] == str(out)
    wide = load_ltm2(WEIGHTS)
    meta = read_checkpoint_meta(WEIGHTS)
    meta["config"]["model"]["mixer"]["read_top_k"] = 16  # another network's config
    save_checkpoint(str(tmp_path / "wide.safetensors"), wide, None, meta)
    for bad in ([WEIGHTS, "--out", str(tmp_path / "x.safetensors")], [WEIGHTS, str(other), "--out", str(other)], [WEIGHTS, str(tmp_path / "wide.safetensors"), "--out", str(tmp_path / "x.safetensors")], [WEIGHTS, str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.safetensors")]):
        failed = run(*bad)
        assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "error" in failed.stderr, (bad, failed.stderr)
    assert not (tmp_path / "x.safetensors").exists()
