"""Shared by the benchmark scripts: machine description, child-process measurement, RESULTS.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB RAM, Python {platform.python_version()}"


def run_measured(cmd: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess | None]:
    """Run ``cmd``; return (wall seconds, peak RSS in MB of that child alone, completed process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    out, err = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed ({code}): {err.strip()[-500:]}")
    return seconds, usage.ru_maxrss / 1024, subprocess.CompletedProcess(cmd, code, out, err)


def update_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md, leaving the other sections alone."""
    import fcntl

    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n\n_Written {datetime.date.today()} on {machine()}._\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    # benchmarks run side by side: one writer at a time, so no section written by another is lost
    with open(RESULTS + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = open(RESULTS).read() if os.path.exists(RESULTS) else "# Benchmark results\n\nEach section is written by the script it names.\n"
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
        tmp = RESULTS + ".partial"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, RESULTS)


def run_script(main) -> None:
    """Run a benchmark's ``main``: bad input (a size, a weights file) ends in one line on stderr and exit status 2."""
    from hashhop.errors import HashHopError

    try:
        main()
    except HashHopError as err:
        print(f"{os.path.basename(sys.argv[0])}: error: {err}", file=sys.stderr)
        sys.exit(2)
