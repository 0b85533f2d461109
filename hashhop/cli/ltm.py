"""``hashhop train``, ``hashhop cost``, ``hashhop serve``: arguments only; the work is :mod:`hashhop.ltm`."""

from __future__ import annotations

import argparse
import os
import sys

from hashhop.cli.common import add_model_args_arg, check_output_file, finite_float, progress_on, size
from hashhop.errors import HashHopError


def add(sub) -> None:
    _add_train(sub)
    _add_cost(sub)
    _add_serve(sub)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a built-in model: builtin:ltm (short HashHop contexts) or LTM-2 (--model ltm2: the byte-level LM)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from hashhop.ltm.config import WEIGHTS, TrainConfig

    d = TrainConfig()
    p.add_argument("--model", choices=("ltm", "ltm2"), default="ltm", help="ltm2: LTM-2 (hashhop/ltm2), trained through the lab")
    p.add_argument("--steps", type=int, default=None, help=f"default {d.steps} (ltm) or the LTM-2 config's (ltm2)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="problems per step")
    p.add_argument("--context-chars", type=int, default=d.context_chars, help="training context size (at most 16384)")
    p.add_argument("--lr", type=finite_float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--out", default=None, help=f"weights file (default {os.path.relpath(WEIGHTS)} or LTM-2's); its summary and model card go next to it"
    )
    p.add_argument("--runs", default="runs/ltm2", help="ltm2: the lab run folder (checkpoints; rerun the command to resume)")
    p.add_argument("--corpus", default=None, help="ltm2: the training code corpus (built there from pinned packages if missing)")
    p.add_argument("--threads", type=int, default=None, help="ltm2: torch CPU threads")
    p.add_argument("--read-steps", type=int, default=None, help="ltm2: steps of the second stage (the auxiliary read loss; 0: none; default the config's; trained once per --read-soup seed)")
    p.add_argument(
        "--read-soup", default=None, metavar="SEEDS",
        help="ltm2: more seeds for the second stage, each trained from the same start and the weights averaged (default: the config's, the next seed; 'none': the stage once)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    import shlex

    from hashhop.ltm.config import WEIGHTS, TrainConfig, card_path, summary_path

    command = "hashhop train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["train"] else "hashhop train"
    if args.model == "ltm2":
        from hashhop.ltm2.config import READ_STEPS, STEPS, ltm2_config
        from hashhop.ltm2.config import WEIGHTS as LTM2_WEIGHTS
        from hashhop.ltm2.train import parse_read_soup, train_ltm2

        out = args.out or LTM2_WEIGHTS
        if not out.endswith(".safetensors"):
            raise HashHopError("--out names the weights file: PATH.safetensors (its model card PATH.card.md goes next to it)")
        steps = STEPS if args.steps is None else args.steps
        read_steps = READ_STEPS if args.read_steps is None else args.read_steps
        if read_steps < 0:
            raise HashHopError(f"--read-steps must be a whole number >= 0 (0: no second stage), got {read_steps}")
        read_soup = parse_read_soup(args.read_soup)
        ltm2_config("corpus", steps, args.seed, threads=args.threads)  # one-line errors before any work
        if read_steps:
            ltm2_config("corpus", read_steps, args.seed, threads=args.threads, stage=2)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        except OSError as err:
            raise HashHopError(f"cannot create the folder for {out}: {err.strerror or err}") from None
        check_output_file(out, "weights file")
        summary = train_ltm2(
            out, args.runs, args.corpus, steps, args.seed, args.threads, progress_on(args), command.strip(), read_steps=read_steps,
            read_soup=read_soup,
        )
        print(f"trained {summary['params']:,} parameters for {summary['steps']} steps; wrote {summary['weights']} and {summary['card']}")
        return 0
    args.out = args.out or WEIGHTS
    args.steps = TrainConfig().steps if args.steps is None else args.steps
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, context_chars=args.context_chars, lr=args.lr, seed=args.seed)
    if not args.out.endswith(".safetensors"):
        raise HashHopError("--out names the weights file: PATH.safetensors (its summary PATH.json and model card PATH.card.md go next to it)")
    folder = os.path.dirname(os.path.abspath(args.out))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise HashHopError(f"cannot write {args.out}: {folder} is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise HashHopError(f"cannot create the folder for {args.out}: {err.strerror or err}") from None
    # Before training, not after it: a real file is created (and removed) in the folder, since /proc and read-only
    # mounts pass permission checks and refuse writes. The weights are written atomically at the end, so a failed
    # run leaves an existing weights file as it was.
    check_output_file(args.out, "weights file")
    check_output_file(summary_path(args.out), "training summary")
    check_output_file(card_path(args.out), "model card")
    from hashhop.ltm.training import train_ltm

    summary = train_ltm(cfg, out=args.out, progress=progress_on(args), command=command.strip())
    final = summary["final"]
    print(
        f"trained {summary['parameters']:,} parameters in {summary['train_seconds']} s: final batch loss {final['loss']:.4f}, "
        f"exact match {final['exact']:.3f}; wrote {args.out}"
    )
    return 0


def _add_cost(sub) -> None:
    p = sub.add_parser(
        "cost",
        help="KV-cache bytes, GPUs and attention FLOPs of a transformer at a context, next to the built-in LTM",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default="llama-3.1-405b", help="a Hugging Face config.json, or a bundled name (llama-3.1-405b)")
    p.add_argument("--context", type=size, default=100_000_000, metavar="TOKENS", help="context length (100M, 1e8, ...)")
    p.add_argument("--gpu-memory", type=finite_float, default=80e9, metavar="BYTES", help="memory per GPU (80e9: an H100 80GB)")
    p.add_argument("--kv-bytes", type=int, default=None, help="bytes per cached value (default: from the config's dtype)")
    p.add_argument("--no-ltm", action="store_true", help="skip measuring the built-in LTM (a 1M-token prefill, about a second)")
    p.set_defaults(run=_run_cost)


def _run_cost(args) -> int:
    from hashhop.ltm.cost import load_config, measure_ltm, side_by_side

    if args.context < 1 or not 1 <= args.gpu_memory <= 1e18 or (args.kv_bytes is not None and not 1 <= args.kv_bytes <= 64):
        raise HashHopError("--context must be >= 1 token, --gpu-memory 1 to 1e18 bytes and --kv-bytes 1..64")
    model = load_config(args.config, args.kv_bytes)
    ltm = None if args.no_ltm else measure_ltm(args.context)
    print(side_by_side(model, ltm, args.context, args.gpu_memory))
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the built-in LTM model as an OpenAI-compatible server (completions and chat)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model", default="builtin:ltm", help="builtin:ltm, builtin:PATH (weights from hashhop train), builtin:ltm2 or builtin:ltm2:PATH"
    )
    add_model_args_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback by default)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-waiting", type=int, default=16, help="requests queued behind the running one; more get HTTP 429")
    p.add_argument(
        "--max-request-mb",
        type=finite_float,
        default=128,
        help="largest request body (128 MB holds a 100M-character prompt as JSON); larger get HTTP 413, refused before reading",
    )
    p.add_argument(
        "--max-inflight-mb",
        type=finite_float,
        default=None,
        help="request bodies held at once (read, queued or being answered), all requests together; beyond it HTTP 429 "
        "(default: 256 MB, or two of the largest request if that is more)%(default).0s",
    )
    p.add_argument("--header-timeout", type=finite_float, default=15, metavar="SECONDS", help="close connections whose headers take longer")
    p.add_argument(
        "--body-timeout", type=finite_float, default=60, metavar="SECONDS", help="close connections whose body takes longer (HTTP 408)"
    )
    p.add_argument("--cache-contexts", type=int, default=4, help="prefilled contexts kept for reuse (prefix caching)")
    p.add_argument(
        "--context",
        default=None,
        metavar="FILE|DIR",
        help="LTM-2 only: a file or a folder (a whole repository: its text files in path order) prefilled once; every request continues it",
    )
    p.add_argument(
        "--context-cache",
        default=None,
        metavar="DIR",
        help="LTM-2 only: save the prefilled --context here, and memory-map it back on the next start (same context, same weights)",
    )
    p.set_defaults(run=_run_serve)


def _run_serve(args) -> int:
    from hashhop.ltm.serve import ServeOptions, serve

    def mb(value: float, flag: str) -> int:
        size = value * 2**20  # finite_float: not nan or inf, but 1e308 MB overflows to inf
        if not 1 <= size < 2**63:  # 1e-9 MB is a thousandth of a byte: refused, not rounded to 0 (= no limit)
            raise HashHopError(f"{flag} must allow 1 byte to 8 EB (2**63 bytes), got {value:g} MB")
        return round(size)

    max_request = mb(args.max_request_mb, "--max-request-mb")
    max_inflight = max(256 << 20, 2 * max_request) if args.max_inflight_mb is None else mb(args.max_inflight_mb, "--max-inflight-mb")
    options = ServeOptions(  # checks itself: one-line errors for bad values
        model=args.model,
        model_args=args.model_args,
        host=args.host,
        port=args.port,
        max_waiting=args.max_waiting,
        max_request_bytes=max_request,
        max_inflight_bytes=max_inflight,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        cache_contexts=args.cache_contexts,
        context=args.context,
        context_cache=args.context_cache,
    )
    try:
        serve(options)
    except OSError as err:  # port in use, no permission... (raised before "serving on" is printed)
        reason = os.strerror(err.errno) if err.errno else (err.strerror or str(err))
        raise HashHopError(f"cannot serve on {args.host}:{args.port}: {reason}") from None
    return 0
