"""The held-out code corpus (issue 11): a fixed file order with networkx last; the concatenation round-trips
(each file's bytes sit where its separator says); the standard library leaves out tests and site-packages;
the build is atomic; load_corpus maps the same bytes."""

import hashlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from hashhop.errors import HashHopError
from hashhop.lab import corpus
from hashhop.lab.corpus import CorpusFile, build_corpus, corpus_bytes, file_offsets, held_out_files, load_corpus, separator

# small installed packages keep the tests fast; networkx is the one the order rule is about
SECOND = "networkx" if importlib.util.find_spec("networkx") is not None else "tqdm"


def small_files(tmp_path, names=("b.py", "a.py", "sub/c.py")):
    """A fake package folder listed through the same walker as the real ones."""
    root = tmp_path / "pkg"
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x = %d\n\xff\xfe not utf-8\r\n" % i)
    return corpus._walk(str(root), "pkg", corpus.PACKAGE_EXCLUDED_DIRS)


def test_order_is_fixed_and_networkx_last():
    packages = [SECOND, "numpy"]  # networkx (when installed) named first still comes last
    first = held_out_files(packages, stdlib=False)
    assert first == held_out_files(packages, stdlib=False)
    order = [f.package for f in first]
    expected = ["numpy", SECOND] if SECOND == "networkx" else [SECOND, "numpy"]
    assert order == sorted(order, key=expected.index)  # grouped, in package order
    for package in expected:
        rels = [f.relpath for f in first if f.package == package]
        assert rels and rels == sorted(rels) and all(r.endswith(".py") for r in rels)
    assert corpus.HELD_OUT_PACKAGES[-1] == "networkx"


def test_stdlib_comes_first_without_tests_or_site_packages():
    files = held_out_files(["numpy"], stdlib=True)
    std = [f for f in files if f.package == "stdlib"]
    assert files[: len(std)] == std and files[len(std)].package == "numpy"
    rels = {f.relpath for f in std}
    assert {"os.py", "json/__init__.py", "asyncio/tasks.py"} <= rels
    parts = {part for rel in rels for part in rel.split("/")[:-1]}
    assert not parts & {"test", "tests", "idle_test", "site-packages", "dist-packages"}
    assert [f.relpath for f in std] == sorted(rels)
    assert all(os.path.isfile(f.path) and f.size_bytes == os.path.getsize(f.path) for f in std)


def test_missing_package_names_pip_install():
    with pytest.raises(HashHopError, match="not installed: pip install no_such_pkg_xyz"):
        held_out_files(["no_such_pkg_xyz"], stdlib=False)
    with pytest.raises(HashHopError, match="twice"):
        held_out_files(["numpy", "numpy"], stdlib=False)
    with pytest.raises(HashHopError, match="empty"):
        held_out_files([], stdlib=False)


def test_walker_keeps_bytes_and_skips_links_out_and_non_files(tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_bytes(b"secret = 1\n")
    root = tmp_path / "pkg"
    (root / "inner").mkdir(parents=True)
    (root / "a.py").write_bytes(b"a = 1\n")
    (root / "inner" / "b.py").write_bytes(b"b = 2\n")
    (root / "out_link.py").symlink_to(outside)
    (root / "in_link.py").symlink_to(root / "a.py")
    (root / "dir.py").mkdir()
    (root / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.py").write_bytes(b"")
    os.mkfifo(root / "fifo.py")
    files = corpus._walk(str(root), "pkg", corpus.PACKAGE_EXCLUDED_DIRS)
    assert [f.relpath for f in files] == ["a.py", "in_link.py", "inner/b.py"]


def test_concatenation_round_trips(tmp_path):
    files = small_files(tmp_path)
    assert [f.relpath for f in files] == ["a.py", "b.py", "sub/c.py"]
    data = b"".join(corpus_bytes(files))
    offsets = file_offsets(files)
    for file, offset in zip(files, offsets):
        sep = separator(file)
        assert sep == b"\n# file: pkg/" + file.relpath.encode() + b"\n"
        assert data[offset - len(sep) : offset] == sep
        assert data[offset : offset + file.size_bytes] == open(file.path, "rb").read()  # bytes unchanged
    assert len(data) == offsets[-1] + files[-1].size_bytes
    # the real thing: a slice of numpy, offsets found from the separators alone
    real = held_out_files(["numpy"], stdlib=False)[:40]
    blob = b"".join(corpus_bytes(real))
    for file in real:
        start = blob.index(separator(file)) + len(separator(file))
        assert blob[start : start + file.size_bytes] == open(file.path, "rb").read()


def test_build_and_load(tmp_path):
    files = small_files(tmp_path)
    out = tmp_path / "corpus.bin"
    info = build_corpus(str(out), files)
    raw = out.read_bytes()
    assert raw == b"".join(corpus_bytes(files))
    assert (info.files, info.total_bytes, info.sha256) == (3, len(raw), hashlib.sha256(raw).hexdigest())
    mapped = load_corpus(str(out))
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.uint8 and not mapped.flags.writeable
    assert mapped.tobytes() == raw
    with pytest.raises(HashHopError, match="cannot read corpus file"):
        load_corpus(str(tmp_path / "missing.bin"))


def test_failed_build_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    files = small_files(tmp_path)
    out = tmp_path / "corpus.bin"
    build_corpus(str(out), files)
    before = out.read_bytes()
    gone = CorpusFile(path=str(tmp_path / "deleted.py"), package="pkg", relpath="deleted.py", size_bytes=3)
    with pytest.raises(HashHopError, match="deleted.py"):
        build_corpus(str(out), files + [gone])  # fails after the first files were written
    assert out.read_bytes() == before
    fresh = tmp_path / "fresh.bin"
    with pytest.raises(HashHopError):
        build_corpus(str(fresh), files + [gone])
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.bin", "pkg"]  # no temporary left behind


def test_command_line(tmp_path):
    out = tmp_path / "c.bin"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    ok = subprocess.run([sys.executable, "-m", "hashhop.lab.corpus", "--out", str(out), "--packages", SECOND, "--no-stdlib"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    lines = dict(line.split(" ", 1) for line in ok.stdout.splitlines())
    assert int(lines["bytes"]) == out.stat().st_size and lines["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert int(lines["files"]) == len(held_out_files([SECOND], stdlib=False))
    bad = subprocess.run([sys.executable, "-m", "hashhop.lab.corpus", "--out", str(tmp_path / "x.bin"), "--packages", "nope_pkg_q", "--no-stdlib"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "pip install nope_pkg_q" in bad.stderr
    assert not (tmp_path / "x.bin").exists()
