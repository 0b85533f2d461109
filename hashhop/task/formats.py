"""Text formats: Magic's prompt/completion text (parse and render), and the sample exports
(text, JSONL, Parquet) written atomically and streamed where the format allows."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from hashhop.errors import HashHopError
from hashhop.task.generator import EOL_JSON, EOL_TEXT, Problem
from hashhop.task.grammar import format_link, parse_completion, parse_prompt, render_prompt
from hashhop.task.sample import Chain, Sample

FORMATS = ("text", "jsonl", "parquet")
SampleLike = Sample | Problem


# -- Magic's text format ---------------------------------------------------------------------
def sample_from_text(prompt: str, completion: str) -> Sample:
    """A :class:`Sample` from a prompt and completion in Magic's format (e.g. its generator's output).

    The prompt is parsed into links and rendered again, so a sample that re-emits the same bytes
    proves the parse complete."""
    links = parse_prompt(prompt)
    hops, chain_of_thought, answers = parse_completion(completion)
    by_key: dict[str, tuple[str, bool, int]] = {}
    for line, (key, value, last) in enumerate(links):
        if key in by_key:
            raise HashHopError(f"hash {key} starts two prompt lines ({by_key[key][2] + 1} and {line + 1}): not a valid HashHop prompt")
        by_key[key] = (value, last, line)
    line_offsets = [0]
    for key, value, last in links:
        line_offsets.append(line_offsets[-1] + len(format_link(key, value, last)) + 1)
    queries = []
    for query, answer in answers:
        hashes, lines = [query], []
        for hop in range(hops):
            if hashes[-1] not in by_key:
                raise HashHopError(f"query {query}: hash {hashes[-1]} has no line in the prompt after {hop} hop(s)")
            value, last, line = by_key[hashes[-1]]
            if last != (hop == hops - 1):
                raise HashHopError(f"query {query}: its chain does not end after exactly {hops} hop(s)")
            hashes.append(value)
            lines.append(line)
        chain = Chain(tuple(hashes), tuple(lines), tuple(line_offsets[line] for line in lines))
        if chain.answer(chain_of_thought) != answer:
            raise HashHopError(f"query {query}: the completion's answer does not follow the prompt's links")
        queries.append(chain)
    return Sample(
        prompt=render_prompt(links),
        hops=hops,
        chain_of_thought=chain_of_thought,
        queries=tuple(queries),
        num_lines=len(links),
        prompt_tokens=len(prompt),
        tokenizer="chars",
    )


def all_chains(prompt: str) -> list[list[str]]:
    """Every chain of a prompt, each as its list of hashes, in prompt order of their first links."""
    links = parse_prompt(prompt)
    next_of = {key: value for key, value, _ in links}
    values = set(next_of.values())
    chains = []
    for key, _, _ in links:
        if key not in values:  # a chain's first hash is no link's value
            chain = [key]
            while chain[-1] in next_of:
                chain.append(next_of[chain[-1]])
            chains.append(chain)
    return chains


def read_jsonl(path: str) -> Iterator[Sample]:
    """Samples from a JSONL file of ours or of Magic's generator (``prompt`` and ``completion`` per
    line), one at a time."""
    with _open_for_reading(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                sample = sample_from_text(record["prompt"], record["completion"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise HashHopError(f"{path}:{number}: not a HashHop record with prompt and completion ({err})") from None
            except HashHopError as err:
                raise HashHopError(f"{path}:{number}: {err}") from None
            if record.get("tokenizer") and record.get("prompt_tokens") is not None:
                from dataclasses import replace

                sample = replace(sample, prompt_tokens=record["prompt_tokens"], tokenizer=record["tokenizer"])
            yield sample


def _open_for_reading(path: str) -> IO[str]:
    try:
        return open(path, encoding="utf-8")
    except OSError as err:
        raise HashHopError(f"cannot read {path}: {err.strerror}") from None


# -- exports ---------------------------------------------------------------------------------
def format_for(path: str, requested: str | None) -> str:
    """The export format: as requested, else from the file extension, else text for stdout, jsonl otherwise."""
    if requested:
        if requested not in FORMATS:
            raise HashHopError(f"unknown format {requested!r}: use one of {', '.join(FORMATS)}")
        return requested
    if path == "-":
        return "text"
    ext = os.path.splitext(path)[1].lower()
    return {".txt": "text", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}.get(ext, "jsonl")


def _target(path: str) -> tuple[str, str]:
    """Where writing ``path`` really goes, and how: ``("atomic", file)`` for a regular file or a new
    one (a symbolic link is followed, so the link stays and its target gets the content);
    ``("stream", path)`` for a character device (/dev/null, a terminal) or a FIFO, written straight
    through, since renaming a file over them would replace them."""
    real = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return "atomic", real
    except OSError as err:
        raise HashHopError(f"cannot write {path}: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise HashHopError(f"output path {path} is a folder: name a file inside it")
    if stat.S_ISREG(mode):
        return "atomic", real
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "stream", real
    kind = "block device" if stat.S_ISBLK(mode) else "socket" if stat.S_ISSOCK(mode) else "special file"
    raise HashHopError(f"cannot write {path}: it is a {kind}; write to a regular file, a FIFO or a character device")


def check_writable(path: str) -> None:
    """Fail before any work if ``path`` cannot be written (missing folder, no permission, a folder,
    a block device or socket)."""
    if path == "-":
        return
    how, real = _target(path)
    if how == "stream":
        if not os.access(real, os.W_OK):
            raise HashHopError(f"cannot write {path}: permission denied; choose another output path")
        return
    folder = os.path.dirname(os.path.abspath(real))
    if not os.path.isdir(folder):
        raise HashHopError(f"cannot write {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (os.path.exists(real) and not os.access(real, os.W_OK)):
        raise HashHopError(f"cannot write {path}: permission denied; choose another output path")


def write_samples(samples: Iterable[SampleLike], path: str, fmt: str, progress: bool = False) -> int:
    """Write samples to ``path`` ("-" for stdout) in ``fmt``; returns how many were written.

    Files appear whole or not at all: the data goes to a temporary file beside the target, renamed
    over it only after the last byte; on any error the temporary file is removed. A FIFO or a
    character device (/dev/null) is written straight through; a symbolic link's target is replaced."""
    check_writable(path)
    if path == "-":
        if fmt == "parquet":
            raise HashHopError("parquet cannot stream to stdout: give an output file")
        return _write(samples, sys.stdout.buffer, fmt, progress)
    with open_output(path) as handle:
        return _write(samples, handle, fmt, progress)


def _write_error(path: str, err: OSError) -> HashHopError:
    reason = err.strerror or str(err) or type(err).__name__
    return HashHopError(f"cannot write {path}: {reason}")


@contextlib.contextmanager
def open_output(path: str):
    """A binary handle for ``path``: atomic (:func:`atomic_output`) for files, straight through for a
    FIFO or a character device. Any OSError (ENOSPC, EACCES, EROFS, ...) becomes one HashHopError
    naming the path."""
    how, real = _target(path)
    if how == "atomic":
        with atomic_output(path) as handle:
            yield handle
        return
    try:
        handle = open(real, "wb")  # a FIFO: waits here for a reader
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with handle:
            yield handle
    except OSError as err:
        raise _write_error(path, err) from None


@contextlib.contextmanager
def atomic_output(path: str):
    """A binary file handle whose content appears at ``path`` only when the block finishes without error.

    A symbolic link is followed (the link stays, its target gets the content). Any OSError becomes a
    one-line HashHopError naming ``path``; the temporary file is removed on every error, a signal
    turned into an exception included."""
    real = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(real))
    try:
        handle = tempfile.NamedTemporaryFile("wb", dir=folder, prefix=f".{os.path.basename(real)}.", suffix=".partial", delete=False)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with handle:
            yield handle
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)  # temporary files are private; the result is not
        os.replace(handle.name, real)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        if isinstance(err, OSError):
            raise _write_error(path, err) from None
        raise


def write_rows(rows: list[dict], path: str, fmt: str) -> None:
    """Plain rows (one schema) as JSONL or Parquet, atomically."""
    check_writable(path)
    if fmt == "text":
        raise HashHopError("rows are written as jsonl or parquet, not text")
    with open_output(path) as handle:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), handle)
        else:
            for row in rows:
                handle.write(json.dumps(row).encode() + b"\n")


def _write(samples: Iterable[SampleLike], handle: IO[bytes], fmt: str, progress: bool) -> int:
    if fmt == "parquet":
        return _write_parquet(samples, handle)
    count = 0
    for sample in samples:
        if fmt == "text":
            if count:
                raise HashHopError("text output holds one sample: use --format jsonl or parquet for several")
            _write_chunks(sample, handle, EOL_TEXT, progress)
            handle.write(b"\n\n" + sample.completion.encode("ascii"))
        else:
            handle.write(b'{"prompt": "')
            _write_chunks(sample, handle, EOL_JSON, progress)
            handle.write(b'", ' + json.dumps(sample.record())[1:].encode("ascii") + b"\n")
        count += 1
    return count


def _write_chunks(sample: SampleLike, handle: IO[bytes], eol: bytes, progress: bool) -> None:
    if isinstance(sample, Problem):
        for chunk in sample.prompt_chunks(eol=eol, progress=progress):
            handle.write(chunk)
    else:
        text = sample.prompt if eol == EOL_TEXT else json.dumps(sample.prompt)[1:-1]
        handle.write(text.encode("ascii"))


def parquet_schema():
    import pyarrow as pa

    spec = pa.struct(
        [
            ("context_tokens", pa.int64()),
            ("tokenizer", pa.string()),
            ("hops", pa.int64()),
            ("chain_of_thought", pa.bool_()),
            ("hash_length", pa.int64()),
            ("alphabet", pa.string()),
            ("num_queries", pa.int64()),
            ("seed", pa.int64()),
        ]
    )
    return pa.schema(
        [
            ("prompt", pa.large_string()),
            ("completion", pa.string()),
            ("hops", pa.int64()),
            ("chain_of_thought", pa.bool_()),
            ("queries", pa.list_(pa.string())),
            ("answers", pa.list_(pa.string())),
            ("chains", pa.list_(pa.list_(pa.string()))),
            ("link_lines", pa.list_(pa.list_(pa.int64()))),
            ("link_offsets", pa.list_(pa.list_(pa.int64()))),
            ("num_lines", pa.int64()),
            ("prompt_tokens", pa.int64()),
            ("tokenizer", pa.string()),
            ("spec", spec),
        ]
    )


def _write_parquet(samples: Iterable[SampleLike], handle: IO[bytes], rows_per_group: int = 64) -> int:
    """Parquet holds each prompt whole in one cell, so each sample is materialised in turn."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise HashHopError("parquet output needs pyarrow: pip install pyarrow") from None
    schema = parquet_schema()
    count = 0
    with pq.ParquetWriter(handle, schema) as writer:
        batch = []
        for sample in samples:
            batch.append({"prompt": sample.prompt, **sample.record()})
            count += 1
            if len(batch) == rows_per_group:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return count
