"""`hashhop generate` / `hashhop export` as a user runs them: where the output goes (devices, links,
FIFOs), signals, write errors, absurd values, start-up. Each test runs the command in a fresh process."""

import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from hashhop.cli import main
from hashhop.errors import HashHopError
from hashhop.task import formats

SMALL = ("--context", "3000", "--tokenizer", "chars", "--seed", "3")


def hashhop(*args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "hashhop.cli", *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def one_line_error(result, code=2):
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def expected_bytes(tmp_path, *args):
    path = tmp_path / "expected.txt"
    assert hashhop("generate", *args, "-o", str(path)).returncode == 0
    data = path.read_bytes()
    path.unlink()
    return data


# -- where the output goes ---------------------------------------------------------------------
@pytest.mark.parametrize("command", [["generate", *SMALL], ["export", "--lengths", "500", "--hops", "1", "--cot", "off", "--samples", "1"]])
def test_dev_null_stays_a_character_device(command):
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    before = os.stat("/dev/null")
    result = hashhop(*command, "-o", "/dev/null")
    after = os.stat("/dev/null")
    if not stat.S_ISCHR(after.st_mode) and os.geteuid() == 0:  # repair what the bug broke, then fail
        os.remove("/dev/null")
        os.mknod("/dev/null", 0o666 | stat.S_IFCHR, before.st_rdev)
        os.chmod("/dev/null", 0o666)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert not [name for name in os.listdir("/dev") if name.endswith(".partial")]


def test_a_symlink_stays_a_link_and_its_target_gets_the_content(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "problem.txt"
    target.write_text("earlier")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    result = hashhop("generate", *SMALL, "-o", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == expected_bytes(tmp_path, *SMALL)
    assert sorted(os.listdir(tmp_path / "real")) == ["problem.txt"]
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "real"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "new.jsonl")
    assert hashhop("generate", *SMALL, "-o", str(link)).returncode == 0
    assert link.is_symlink() and (tmp_path / "new.jsonl").read_text().startswith('{"prompt": ')


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    result = hashhop("generate", *SMALL, "-o", str(fifo), "--format", "text")
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received == [expected_bytes(tmp_path, *SMALL)]
    assert os.listdir(tmp_path) == ["pipe"]


# -- write errors: one line, exit 2, nothing partial, an earlier file untouched -------------------
@pytest.mark.parametrize("path", ["/proc/hashhop-test.jsonl", "/dev/full"])
@pytest.mark.parametrize("command", [["generate", *SMALL], ["export", "--lengths", "500", "--hops", "1", "--cot", "off", "--samples", "1"]])
def test_an_unwritable_path_is_one_line_and_exit_2(command, path):
    if not os.path.exists(os.path.dirname(path)) or (path == "/dev/full" and not os.path.exists(path)):
        pytest.skip(f"no {path}")
    result = hashhop(*command, "-o", path)
    one_line_error(result)
    assert path in result.stderr


@pytest.mark.parametrize(
    "where, err",
    [("write", OSError(28, "No space left on device")), ("replace", OSError(30, "Read-only file system")), ("create", PermissionError(13, "Permission denied"))],
)
def test_os_errors_while_writing_are_one_line(tmp_path, monkeypatch, capsys, where, err):
    out = tmp_path / "out.jsonl"
    out.write_text("earlier results\n")

    def fail(*args, **kwargs):
        raise err

    if where == "write":
        real = formats._write_chunks

        def write_some_then_fail(sample, handle, eol, progress):
            real(sample, handle, eol, progress)
            raise err

        monkeypatch.setattr(formats, "_write_chunks", write_some_then_fail)
    elif where == "replace":
        monkeypatch.setattr(formats.os, "replace", fail)
    else:
        monkeypatch.setattr(formats.tempfile, "NamedTemporaryFile", fail)
    assert main(["generate", *SMALL, "-o", str(out)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and f"cannot write {out}: {err.strerror}" in stderr
    assert out.read_text() == "earlier results\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_a_block_device_or_socket_is_refused(tmp_path):
    import socket

    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    try:
        with pytest.raises(HashHopError, match="is a socket"):
            formats.check_writable(path)
    finally:
        server.close()


# -- signals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("earlier", [True, False])
def test_a_stop_signal_leaves_no_partial_file(tmp_path, signum, earlier):
    out = tmp_path / "problem.txt"
    if earlier:
        out.write_text("earlier problem")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashhop.cli", "generate", "--context", "1e11", "--tokenizer", "chars", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # the signal's default disposition, whatever the suite was started under (nohup leaves SIGHUP ignored, and
        # generate keeps an ignored signal ignored, on purpose)
        preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not any(name.endswith(".partial") and os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)):
            assert proc.poll() is None and time.monotonic() < deadline, "the write never started"
            time.sleep(0.05)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, stderr
    assert stderr.strip() == f"hashhop generate: stopped by {signal.Signals(signum).name}"
    assert os.listdir(tmp_path) == (["problem.txt"] if earlier else [])
    if earlier:
        assert out.read_text() == "earlier problem"


# -- absurd values fail at once, naming the option ---------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--context", "1000", "--hops", "1000000000"], "--hops"),
        (["--context", "1000", "--hops", "100000"], "too small for one chain"),
        (["--hash-length", "100000000"], "--hash-length"),
        (["--context", "1000", "--tokenizer", "chars", "--hash-length", "4096"], "too small for one chain"),
        (["--context", "1e13"], "--context"),
        (["--queries", "10000000"], "--queries"),
        (["--context", "1M", "--tokenizer", "chars", "--queries", "100000"], "100,000 queries need 100,000 chains"),
        (["--context", "1000", "--queries", "500"], "queries need"),
        (["--seed", str(2**63 - 2), "--samples", "5"], "--seed"),
    ],
)
def test_absurd_values_fail_fast_with_one_line(tmp_path, args, message):
    result = hashhop("generate", *args, "-o", str(tmp_path / "x.jsonl"), timeout=60)
    one_line_error(result)
    assert message in result.stderr
    assert os.listdir(tmp_path) == []


# -- start-up ----------------------------------------------------------------------------------
def test_help_imports_neither_torch_nor_numpy():
    code = (
        "import sys\n"
        "from hashhop.cli import main\n"
        "for argv in (['--help'], ['generate', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
