"""Reports of a results file: per-cell accuracy with 95% intervals, error diagnosis, effective context
length; as markdown, CSV, a heatmap PNG, accuracy-vs-length lines and one self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import html
import io
import os
from dataclasses import dataclass

from hashhop.errors import HashHopError
from hashhop.eval.score import EFFECTIVE_THRESHOLD, OUTCOMES, effective_length, wilson_interval


@dataclass
class Cell:
    length: int
    hops: int
    cot: bool
    answered: int = 0
    correct: int = 0
    skipped: int = 0
    failed: int = 0
    links_right: int = 0
    link_total: int = 0
    prompt_tokens: int = 0
    outcomes: dict | None = None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.answered)


def check_records(records: list[dict]) -> None:
    """Records a report can be made of: at least one, each valid by the results store's one check
    (:func:`hashhop.eval.store.validate_record`: fields, types and ranges, e.g. no length of -5 or 10**30, no more
    links right than hops). One line naming the record and the field."""
    from hashhop.eval.store import validate_record

    if not records:
        raise HashHopError("the results file has no records yet: run hashhop eval first")
    for r in records:
        try:
            validate_record(r)
        except ValueError as err:
            where = str(r.get("id"))[:80] if isinstance(r, dict) else "?"
            raise HashHopError(f"record {where!r}: {err}") from None


def aggregate(records: list[dict]) -> list[Cell]:
    if records:
        check_records(records)
    cells: dict[tuple[int, int, bool], Cell] = {}
    for r in records:
        key = (r["length"], r["hops"], r["cot"])
        cell = cells.setdefault(key, Cell(*key, outcomes=dict.fromkeys(OUTCOMES, 0)))
        if r["status"] == "skipped":
            cell.skipped += 1
        elif r["status"] != "ok":
            cell.failed += 1
        else:
            cell.answered += 1
            cell.correct += bool(r["correct"])
            cell.outcomes[r["outcome"]] += 1
            cell.links_right += r.get("links_right", 0)
            cell.link_total += r["hops"]
            cell.prompt_tokens = max(cell.prompt_tokens, r.get("prompt_tokens", 0))
    return [cells[k] for k in sorted(cells)]


def effective_lengths(cells: list[Cell], threshold: float = EFFECTIVE_THRESHOLD) -> dict[tuple[int, bool], int | None]:
    by_setting: dict[tuple[int, bool], dict[int, float]] = {}
    for c in cells:
        if c.accuracy is not None:
            by_setting.setdefault((c.hops, c.cot), {})[c.length] = c.accuracy
    return {k: effective_length(v, threshold) for k, v in sorted(by_setting.items())}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def markdown(cells: list[Cell], model: str, threshold: float = EFFECTIVE_THRESHOLD) -> str:
    lines = [
        f"# HashHop results: {model}",
        "",
        "| length | hops | CoT | accuracy | 95% CI | answered | links right | " + " | ".join(OUTCOMES[1:]) + " | skipped | failed |",
        "|---|---|---|---|---|---|---|" + "---|" * (len(OUTCOMES) - 1) + "---|---|",
    ]
    for c in cells:
        low, high = c.interval
        links = _pct(c.links_right / c.link_total) if c.link_total else "-"
        lines.append(
            f"| {c.length:,} | {c.hops} | {'yes' if c.cot else 'no'} | {_pct(c.accuracy)} | {_pct(low)}-{_pct(high)} | "
            f"{c.answered} | {links} | " + " | ".join(str(c.outcomes[o]) for o in OUTCOMES[1:]) + f" | {c.skipped} | {c.failed} |"
        )
    lines += ["", f"Effective context length (longest length with accuracy >= {threshold:.0%} there and at every shorter length):", ""]
    for (hops, cot), length in effective_lengths(cells, threshold).items():
        lines.append(
            f"- {hops} hop(s), chain of thought {'on' if cot else 'off'}: {'below the shortest length' if length is None else f'{length:,} tokens'}"
        )
    lines += [
        "",
        "Outcomes of wrong answers: stopped_early (an earlier hash of the right chain), other_chain (a hash of another "
        "chain), hallucinated (not in the prompt), empty, unparseable.",
    ]
    return "\n".join(lines)


def write_csv(cells: list[Cell], path_or_handle) -> None:
    """The cells as CSV, to a path (written atomically) or to an open text handle."""
    if isinstance(path_or_handle, (str, os.PathLike)):
        buffer = io.StringIO(newline="")
        write_csv(cells, buffer)
        _write_atomically(os.fspath(path_or_handle), buffer.getvalue().encode())
        return
    writer = csv.writer(path_or_handle)
    writer.writerow(
        [
            "length",
            "hops",
            "cot",
            "accuracy",
            "ci_low",
            "ci_high",
            "answered",
            "correct",
            "skipped",
            "failed",
            "links_right_fraction",
            *OUTCOMES,
        ]
    )
    for c in cells:
        low, high = c.interval
        writer.writerow(
            [
                c.length,
                c.hops,
                c.cot,
                "" if c.accuracy is None else f"{c.accuracy:.4f}",
                f"{low:.4f}",
                f"{high:.4f}",
                c.answered,
                c.correct,
                c.skipped,
                c.failed,
                f"{c.links_right / c.link_total:.4f}" if c.link_total else "",
                *(c.outcomes[o] for o in OUTCOMES),
            ]
        )


def _figures(cells: list[Cell], model: str) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lengths = sorted({c.length for c in cells})
    hops = sorted({c.hops for c in cells})
    cots = sorted({c.cot for c in cells})
    by_key = {(c.length, c.hops, c.cot): c for c in cells}
    figures = {}

    fig, axes = plt.subplots(1, len(cots), figsize=(1.6 + 1.1 * len(lengths) * len(cots), 1.4 + 0.6 * len(hops)), squeeze=False)
    for ax, cot in zip(axes[0], cots):
        grid = np.full((len(hops), len(lengths)), np.nan)
        for i, h in enumerate(hops):
            for j, length in enumerate(lengths):
                cell = by_key.get((length, h, cot))
                if cell is not None and cell.accuracy is not None:
                    grid[i, j] = 100 * cell.accuracy
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto")
        for i in range(len(hops)):
            for j in range(len(lengths)):
                ax.text(j, i, "-" if np.isnan(grid[i, j]) else f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(lengths)), [_short(x) for x in lengths])
        ax.set_yticks(range(len(hops)), [str(h) for h in hops])
        ax.set_xlabel("context length (tokens)")
        if ax is axes[0][0]:  # one label for the row: the next panel's would overlap this one's cells
            ax.set_ylabel("hops")
        ax.set_title(f"chain of thought {'on' if cot else 'off'}")
    fig.colorbar(image, ax=axes[0].tolist(), label="exact match %")
    fig.suptitle(model, y=1.06)  # above the panel titles (the png is saved with a tight bounding box)
    figures["heatmap.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for h in hops:
        for cot in cots:
            xs = [x for x in lengths if (x, h, cot) in by_key and by_key[(x, h, cot)].accuracy is not None]
            if not xs:
                continue
            acc = [100 * by_key[(x, h, cot)].accuracy for x in xs]
            low = [100 * by_key[(x, h, cot)].interval[0] for x in xs]
            high = [100 * by_key[(x, h, cot)].interval[1] for x in xs]
            line = ax.plot(xs, acc, marker="o", linestyle="-" if cot else "--", label=f"{h} hop(s), CoT {'on' if cot else 'off'}")[0]
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.12)
    ax.set_xscale("log")
    ax.set_ylim(-3, 103)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("exact match % (95% CI)")
    ax.set_title(model)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figures["accuracy_vs_length.png"] = _png(fig)
    return figures


def _short(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "K")):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{suffix}"
    return f"{n:,}"


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_report(records: list[dict], out_dir: str, threshold: float = EFFECTIVE_THRESHOLD) -> list[str]:
    """Write summary.md, summary.csv, heatmap.png, accuracy_vs_length.png and report.html; return their paths.

    Everything is made in memory first; each file is then written to a temporary name and renamed over its
    target, so a failure leaves the earlier report's files whole (never a half-written file)."""
    check_records(records)
    models = sorted({r["model"] for r in records})
    model = ", ".join(models)
    cells = aggregate(records)
    md = markdown(cells, model, threshold)
    figures = _figures(cells, model) if any(c.answered for c in cells) else {}
    buffer = io.StringIO(newline="")
    write_csv(cells, buffer)
    outputs = {"summary.csv": buffer.getvalue().encode(), "summary.md": md.encode(), **figures}
    images = "".join(
        f'<p><img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}"></p>' for name, data in figures.items()
    )
    table = _html_table(md)
    outputs["report.html"] = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>HashHop: {html.escape(model)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "img{max-width:100%}</style></head><body>" + table + images + "</body></html>"
    ).encode()
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise HashHopError(f"report folder {out_dir} is a file: name a folder for the report")
    paths = []
    try:
        os.makedirs(out_dir, exist_ok=True)
        for name, data in outputs.items():
            path = os.path.join(out_dir, name)
            _write_atomically(path, data)
            paths.append(path)
    except OSError as err:
        raise HashHopError(f"cannot write the report into {out_dir}: {err.strerror or err}") from None
    return paths


def _write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.partial"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _html_table(md: str) -> str:
    """The markdown summary as HTML (tables, headings, lists; nothing else is used)."""
    out, in_table, in_list = [], False, False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{html.escape(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    out.append("</table>" if in_table else "")
    out.append("</ul>" if in_list else "")
    return "".join(out)
