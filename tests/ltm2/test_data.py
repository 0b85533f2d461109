"""LTM-2's training mixture: exact lengths, targets aligned with the text, determinism; every component's answers
parsed back from its text and checked against what the text says; the HashHop component in Magic's format; no
RULER surface form in any sample; the training corpus refuses held-out packages; one-line errors."""

import hashlib
import importlib.metadata
import json
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from hashhop.errors import HashHopError
from hashhop.lab.corpus import HELD_OUT_PACKAGES, CorpusFile, build_corpus
from hashhop.lab.data import IGNORE, TASKS, TaskConfig
from hashhop.ltm2 import data as d
from hashhop.task import ruler
from hashhop.task.grammar import parse_completion, parse_prompt

LENGTHS = (d.MIN_SEQ_LEN, 1000, 4097)
TASK = d.TASK_NAME if d.TASK_NAME in TASKS else "hashhop_chars"  # mixture_batch reads only seq_len and extra


@pytest.fixture
def corpus_path(tmp_path):
    """A tiny corpus: a couple of made-up source files in the training corpus's layout."""
    root = tmp_path / "pkg"
    root.mkdir()
    files = []
    for name, body in [
        ("alpha.py", "".join(f"def alpha_{i}(x):\n    return x * {i} + {i * i}\n\n" for i in range(300))),
        ("beta.py", "".join(f"class Beta{i}:\n    size = {i}\n    label = 'beta {i}'\n\n" for i in range(300))),
    ]:
        (root / name).write_text(body)
        files.append(CorpusFile(path=str(root / name), package="pkg", relpath=name, size_bytes=len(body)))
    out = tmp_path / "corpus.bin"
    build_corpus(str(out), files)
    return str(out)


@pytest.fixture
def corpus(corpus_path):
    return d.load_train_corpus(corpus_path)


def cfg(seq_len=512, **extra):
    return TaskConfig(name=TASK, seq_len=seq_len, extra=extra)


def trained(text: bytes, mask: np.ndarray) -> str:
    return bytes(np.frombuffer(text, dtype=np.uint8)[mask]).decode("ascii")


# -- shapes, alignment, determinism ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(d.COMPONENTS))
def test_components_give_exactly_the_length_asked(name, corpus):
    for length in LENGTHS:
        for seed in range(25):
            text, mask = d.COMPONENTS[name](seed, length, corpus)
            assert isinstance(text, bytes) and len(text) == length
            assert mask.dtype == bool and mask.shape == (length,)
            assert mask.any()
            assert mask.all() if name == "code" else mask.mean() < 0.8
            assert (text, mask.tolist()) == (lambda t, m: (t, m.tolist()))(*d.COMPONENTS[name](seed, length, corpus))


def test_mixture_batch_targets_are_the_next_trained_byte_and_deterministic(corpus_path, corpus):
    c = cfg(512, corpus=corpus_path, short_recall=0)  # every row one full-size sample (the curriculum: below)
    x, y = d.mixture_batch(c, 24, torch.Generator().manual_seed(7))
    assert x.shape == y.shape == (24, 512) and x.dtype == y.dtype == torch.long
    assert int(x.min()) >= 0 and int(x.max()) < 256
    # Rebuild each row from its seed: inputs are the text without its last byte; target t is byte t + 1 where trained.
    seeds = torch.randint(0, 2**62, (24,), generator=torch.Generator().manual_seed(7)).tolist()
    names, probs = d.mixture_weights(d.DEFAULT_MIX)
    seen = set()
    for row, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        name = names[int(rng.choice(len(names), p=probs))]
        seen.add(name)
        text, mask = d.COMPONENTS[name](rng, 513, corpus)
        assert x[row].tolist() == list(text[:-1])
        assert y[row].tolist() == [b if m else IGNORE for b, m in zip(text[1:], mask[1:])]
    assert len(seen) >= 3
    x2, y2 = d.mixture_batch(c, 24, torch.Generator().manual_seed(7))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = d.mixture_batch(c, 24, torch.Generator().manual_seed(8))
    assert not torch.equal(x, x3)


def test_short_recall_rows_are_code_then_a_whole_shorter_task(corpus_path, corpus):
    """The curriculum: a recall row may hold a shorter task after a code window that is trained like code."""
    c = cfg(2048, corpus=corpus_path, short_recall=1.0, mix={"kv": 1.0, "code": 0.0})
    x, y = d.mixture_batch(c, 16, torch.Generator().manual_seed(3))
    whole = bytes(corpus)
    lengths = set()
    for row in range(16):
        labelled = (y[row] != IGNORE).nonzero().flatten().tolist()
        lead = next(i for i in range(len(labelled)) if labelled[i] != i) if labelled[0] == 0 else 0
        assert lead > 0  # the code window: every next byte trained from the start
        assert bytes(x[row, : lead - 1].tolist()) in whole
        lengths.add(lead)
        assert (y[row, lead:] != IGNORE).float().mean() < 0.5  # the task after it: answers only
    assert len(lengths) > 8  # log-uniform sizes
    with pytest.raises(HashHopError, match="short_recall"):
        d.mixture_batch(cfg(512, corpus=corpus_path, short_recall=2), 2, torch.Generator())


def test_mixture_weights_select_components(corpus_path, corpus):
    x, y = d.mixture_batch(cfg(300, corpus=corpus_path, mix={"code": 1.0}), 8, torch.Generator().manual_seed(0))
    whole = bytes(corpus)
    for row in range(8):
        assert (y[row] != IGNORE).all()  # code: every next byte trained
        assert bytes(x[row].tolist()) + bytes([int(y[row, -1])]) in whole
    # No code weight, no corpus: the haystacks are prose and nothing needs the corpus.
    x, y = d.mixture_batch(cfg(300, mix={"kv": 1, "code": 0}), 8, torch.Generator().manual_seed(0))
    assert ((y != IGNORE).sum(1) > 0).all() and ((y != IGNORE).float().mean(1) < 0.5).all()
    assert sum(d.DEFAULT_MIX.values()) == pytest.approx(1.0)
    assert d.DEFAULT_MIX == {"code": 0.35, "hashhop": 0.35, "kv": 0.12, "needle": 0.12, "vartrack": 0.06}
    for bad, match in [({"kvv": 1}, "unknown mixture component"), ({"kv": -1}, "must be a number >= 0"), ({"kv": 0}, "all zero")]:
        with pytest.raises(HashHopError, match=match):
            d.mixture_batch(cfg(300, mix=bad), 1, torch.Generator())
    with pytest.raises(HashHopError, match="at least 256 bytes"):
        d.mixture_batch(cfg(100, mix={"kv": 1}), 1, torch.Generator())


def test_missing_corpus_is_a_one_line_error_with_the_way_out(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    for c in [cfg(), cfg(corpus=str(tmp_path / "missing.bin")), cfg(corpus=str(empty)), cfg(corpus=str(tmp_path))]:
        with pytest.raises(HashHopError) as err:
            d.mixture_batch(c, 2, torch.Generator())
        assert "\n" not in str(err.value) and "python -m hashhop.ltm2.data --out PATH" in str(err.value)
    with pytest.raises(HashHopError, match="python -m hashhop.ltm2.data"):
        d.code_sample(0, 512, None)


# -- HashHop: Magic's format, answers trained, hashes not ----------------------------------------------------------
@pytest.mark.parametrize("near_miss", [0.0, 1.0])
def test_hashhop_component_is_magics_format_with_answer_masks(corpus, near_miss):
    specs = []
    for seed in range(150):
        length = (d.MIN_SEQ_LEN, 1500, 4097)[seed % 3]
        built = d.build_hashhop(seed, length, corpus if seed % 2 else None, near_miss=near_miss)
        text, mask = built.render(length)
        prompt, completion, filler = built.meta["prompt"], built.meta["completion"], built.meta["filler"]
        assert text == text[:filler] + (prompt + "\n\n" + completion).encode()
        assert filler == 0 or text[filler - 1 : filler] == b"\n"  # the prompt starts a line
        links = parse_prompt(prompt)
        hops, cot, answers = parse_completion(completion)
        spec = built.meta["spec"]
        assert (hops, cot) == (spec.hops, spec.chain_of_thought) and len(answers) == spec.num_queries >= 1
        mapping = {k: v for k, v, _ in links}
        assert len(mapping) == len(links)
        for query, answer in answers:  # the answers follow the prompt's links
            chain = [query]
            for _ in range(hops):
                chain.append(mapping[chain[-1]])
            assert chain[-1] not in mapping  # the chain's last link
            assert answer == (" = ".join(chain[1:]) if cot else chain[-1])
        assert trained(text, mask) == "".join(a + "'" for _, a in answers)
        assert not mask[: filler + len(prompt) + 2].any()  # never the prompt's random hashes
        for byte, _, sources, kind in built.reads:  # read targets still on the bytes the answer writes
            if kind == d.COPY:
                assert all(text[s - 1 : s + 1] == text[byte - 1 : byte + 1] for s in sources)
        specs.append(spec)
    assert {s.hops for s in specs} == {1, 2, 3, 4}
    assert {s.chain_of_thought for s in specs} == {True, False}
    assert len({s.alphabet for s in specs}) >= 5 and any("+" in s.alphabet for s in specs) and any("_" in s.alphabet for s in specs)
    lengths = [s.hash_length for s in specs]
    assert min(lengths) < 8 and max(lengths) > 24 and np.mean([8 <= h <= 16 for h in lengths]) > 0.5
    assert max(s.num_queries for s in specs) >= 8 and np.mean([s.num_queries >= 2 for s in specs]) > 0.8


# -- kv, needle, vartrack: answers parsed back from the text ------------------------------------------------------
KV_PARSE = {  # layout: (pair line, query line with its answer and closing text, 2-hop joiner)
    "arrow": (r"(\S+) -> (\S+)", r"(\S+) -> (.+)", " -> "),
    "colon": (r"(\S+): (\S+)", r"(\S+): (.+)", ": "),
    "semicolon": (r"(\S+) = (\S+);", r"(\S+) = (.+);", " = "),
    "python": (r'([A-Za-z_]\w*) = "([^"]*)"', r'assert ([A-Za-z_]\w*) == "([^"]*)"', None),
    "json": (None, r'data\["([^"]*)"\] == "([^"]*)"', None),
}


def test_kv_answers_are_the_values_the_text_gives(corpus):
    layouts, two_hop = set(), 0
    for seed in range(200):
        length = (d.MIN_SEQ_LEN, 1200, 4097)[seed % 3]
        built = d.build_kv(seed, length, corpus if seed % 2 else None)
        text, mask = built.render(length)
        layout = built.meta["layout"]
        layouts.add(layout)
        pair_re, query_re, joiner = KV_PARSE[layout]
        close = d.KV_LAYOUTS[layout][3]
        block, queries = text.decode("ascii", "replace").rsplit("\n\n", 1)  # context, blank line, queries
        context = block[block.rindex("data = {") :] if layout == "json" else block
        if layout == "json":
            mapping = json.loads(context[len("data = ") :])
        else:
            mapping = {}
            for line in reversed(context.split("\n")):  # the pair block ends the context; haystack lines before it
                match = re.fullmatch(pair_re, line)
                if not match:
                    break
                assert match.group(1) not in mapping  # every key once
                mapping[match.group(1)] = match.group(2)
        answers = []
        for line in queries.rstrip("\n").split("\n"):
            key, answer = re.fullmatch(query_re, line).groups()
            hops = answer.split(joiner) if joiner else [answer]
            chain = [key]
            for _ in hops:
                chain.append(mapping[chain[-1]])
            assert hops == chain[1:]  # each hop written out, in order
            assert chain[-1] not in mapping  # ... to the end of the chain
            two_hop += len(hops) == 2
            answers.append(answer + close)
        assert len(answers) >= 1 and trained(text, mask) == "".join(answers)
        assert len(built.meta["pairs"]) > len(answers)  # the asked pairs among others
    assert layouts == set(d.KV_LAYOUTS) and two_hop > 10


def _template_re(template: str) -> str:
    """A template as a regex: ``key`` and ``value`` groups; a key written twice must be the same key."""
    pattern = re.escape(template).replace(r"\{value\}", r"(?P<value>[\w-]+)")
    return pattern.replace(r"\{key\}", r"(?P<key>[\w-]+)", 1).replace(r"\{key\}", "(?P=key)")


@pytest.mark.parametrize("far_keys, max_asked, hold", [(0.0, 2, False), (0.8, 2, False), (0.5, 16, False), (0.8, 16, True)])
def test_needle_answers_are_the_values_of_the_asked_keys(corpus, far_keys, max_asked, hold):
    templates, distractors, asides, leads, most_asked, held = set(), 0, set(), 0, 0, 0
    for seed in range(200):
        length = (d.MIN_SEQ_LEN, 1200, 4097)[seed % 3]
        built = d.build_needle(seed, length, corpus if seed % 2 else None, far_keys, max_asked, reads=True, hold=hold)
        text, mask = built.render(length)
        statement, question, close = d.NEEDLE_TEMPLATES[built.meta["template"]]
        aside, lead = built.meta["aside"], built.meta["lead"]
        templates.add(statement)
        asides.add(aside)
        leads += lead == " "
        body = text.decode("ascii", "replace")
        needles = {}
        for line in body.split("\n"):
            match = re.fullmatch(_template_re(statement), line)
            if match:
                assert match["key"] not in needles
                needles[match["key"]] = match["value"]
        # the questions: the same template's question (the aside after its last key), the value and its closing text
        ask_re = re.compile(_template_re(d.needle_question(question, aside, lead) + lead + "{value}") + re.escape(close))
        matches = list(ask_re.finditer(body))
        asked = [(m["key"], m["value"]) for m in matches]
        assert 1 <= len(asked) <= max_asked and len(needles) >= len(asked)
        most_asked = max(most_asked, len(asked))
        distractors += len(needles) > len(asked)
        for key, value in asked:
            assert needles[key] == value
        assert trained(text, mask) == "".join(lead + value + close for _, value in asked)
        assert body.endswith(close if close == "\n" else close + "\n")
        # read targets: each asked value's bytes, out of its needle's value (none where the value comes before the key)
        keyed = statement.index("{key}") < statement.index("{value}")
        reads = {byte: (source, kind) for byte, read, (source,), kind in built.reads if read == 0}
        assert len(reads) == len(built.reads)
        values = {m.start("value") for m in matches}
        if hold and aside and keyed and question.rpartition("{key}")[2] == statement.split("{key}")[1].split("{value}")[0]:
            # holds: from the byte after the question's last key, every aside byte reads the needle's byte after its
            # key; then each byte up to the value, and the value's first, reads the next needle byte (parsed from the text)
            held += 1
            for m in matches:
                needle_at = body.index(statement.format(key=m["key"], value=m["value"]) + "\n")
                after_key = needle_at + len(statement[: statement.index("{key}")].format(key=m["key"])) + len(m["key"])
                between = len(statement.split("{key}")[1].split("{value}")[0])
                key_end = m.start("value") - between - len(aside)  # after the question's last key
                assert body[key_end - len(m["key"]) : key_end] == m["key"]
                for i in range(len(aside) + between + 1):  # the aside, the tail, the lead, the value's first byte
                    expect = after_key + max(0, i - len(aside))
                    assert reads.pop(key_end + i) == (expect, d.JUMP)
                    assert i < len(aside) or text[key_end + i] == text[expect]
            values = set()
        assert len(reads) == (sum(len(v) for _, v in asked) - (len(matches) if not values else 0) if keyed else 0)
        for byte, (source, kind) in reads.items():
            assert text[byte] == text[source] and source < byte
            assert kind == (d.JUMP if byte in values else d.COPY)
    assert len(templates) == len(d.NEEDLE_TEMPLATES) >= 6 and distractors > 50
    assert (asides == {""}) == (not far_keys) and (leads > 0) == bool(far_keys)
    if far_keys:
        assert asides == {"", *d.NEEDLE_ASIDES}
    assert most_asked == max_asked
    assert (held > 10) == hold


VAR_PARSE = {  # style: (first assignment, copy)
    "python": (r"(\w+) = (\d+)", r"(\w+) = ([a-z]_[a-z]+)"),
    "js": (r"let (\w+) = (\d+);", r"let (\w+) = ([a-z]_[a-z]+);"),
    "shell": (r"(\w+)=(\d+)", r"(\w+)=\$([a-z]_[a-z]+)"),
    "walrus": (r"(\w+) := (\d+)", r"(\w+) := ([a-z]_[a-z]+)"),
}
QUESTION_RES = [  # each question template: the value asked, then the answer (a list of variables)
    re.escape(q.split("{value}")[0]) + r"(\d+)" + re.escape(q.split("{value}")[1]) + r"([a-z]_[a-z]+(?:, [a-z]_[a-z]+)*)"
    for q in d.VARTRACK_QUESTIONS
]


def test_vartrack_answers_list_the_chain_in_order(corpus):
    styles, hops, two_chains = set(), set(), 0
    for seed in range(200):
        length = (d.MIN_SEQ_LEN, 1200, 4097)[seed % 3]
        built = d.build_vartrack(seed, length, corpus if seed % 2 else None)
        text, mask = built.render(length)
        styles.add(built.meta["style"])
        first_re, copy_re = VAR_PARSE[built.meta["style"]]
        body = text.decode("ascii", "replace")
        holds, source, line_of = {}, {}, {}
        for number, line in enumerate(body.split("\n")):
            if m := re.fullmatch(first_re, line):
                holds.setdefault(m.group(2), []).append(m.group(1))
            elif m := re.fullmatch(copy_re, line):
                source[m.group(1)] = m.group(2)
            else:
                continue
            line_of[m.group(1)] = number
        two_chains += len(holds) == 2
        answers = []
        for line in reversed(body.rstrip("\n").split("\n")):  # the questions end the text
            match = next((m for r in QUESTION_RES if (m := re.fullmatch(r, line))), None)
            if not match:
                break
            value, listed = match.groups()
            (start,) = holds[value]
            chain = [start]
            while following := [n for n, s in source.items() if s == chain[-1]]:
                (nxt,) = following
                assert line_of[nxt] > line_of[chain[-1]]  # a copy comes after what it copies
                chain.append(nxt)
            assert listed.split(", ") == chain
            hops.add(len(chain) - 1)
            answers.insert(0, listed + "\n")
        assert answers and trained(text, mask) == "".join(answers)
    assert styles == set(d.VARTRACK_STYLES) and hops == {1, 2, 3, 4, 5} and two_chains > 20


# -- held-out evaluation formats stay unseen -------------------------------------------------------------------------
def test_no_ruler_surface_form_in_any_sample(corpus_path, corpus):
    needle = ruler._needle("numbers", "k", "1")  # RULER's needle sentence, as our evaluation writes it
    forbidden = [needle.split(" for ")[0], "special magic", ruler.NOISE_LINE.strip(), "The grass is green", "VAR ", *d.RULER_STRINGS]
    var_line = re.compile(r"VAR [A-Z]{5} = ")
    texts = []
    x, _ = d.mixture_batch(cfg(1024, corpus=corpus_path), 200, torch.Generator().manual_seed(3))
    texts += [bytes(row.tolist()) for row in x]
    for name in ("kv", "needle", "vartrack", "hashhop"):
        texts += [d.COMPONENTS[name](seed, 2048, corpus if seed % 2 else None)[0] for seed in range(60)]
    texts += [d.needle_sample(seed, 4096, corpus if seed % 2 else None, far_keys=1.0, max_asked=16)[0] for seed in range(60)]
    for text in texts:
        decoded = text.decode("ascii", "replace")
        assert not any(f in decoded for f in forbidden)
        assert not var_line.search(decoded)


# -- the training code corpus ------------------------------------------------------------------------------------------
def test_build_train_corpus_writes_pinned_sources_in_order(tmp_path):
    version = importlib.metadata.version("tqdm")
    out = tmp_path / "train.bin"
    stats = d.build_train_corpus(str(out), packages=(f"tqdm=={version}",))
    data = out.read_bytes()
    assert stats["bytes"] == len(data) and stats["sha256"] == hashlib.sha256(data).hexdigest()
    names = re.findall(rb"\n# file: (\S+)\n", data)
    assert len(names) == stats["files"] > 10 and names == sorted(names) and data.startswith(b"\n# file: tqdm/")
    assert all(n.startswith(b"tqdm/") and n.endswith(b".py") for n in names)
    assert stats["packages"] == [f"tqdm=={version}"]
    assert "sympy==1.13.3" in d.TRAIN_PACKAGES and not any(d.held_out(p.split("==")[0]) for p in d.TRAIN_PACKAGES)


def test_build_train_corpus_refuses_held_out_missing_and_unpinned_packages(tmp_path):
    out = tmp_path / "train.bin"
    installed = {}
    for package in HELD_OUT_PACKAGES:
        try:
            installed[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            installed[package] = "1.0"
    assert {"torch", "numpy", "matplotlib", "networkx"} <= set(installed)
    for pin in [f"{p}=={v}" for p, v in installed.items()] + ["json==1.0", "stdlib==1", "os==1"]:
        with pytest.raises(HashHopError, match="held-out corpus") as err:
            d.build_train_corpus(str(out), packages=(f"tqdm=={importlib.metadata.version('tqdm')}", pin))
        assert "\n" not in str(err.value)
    with pytest.raises(HashHopError, match=re.escape("pip install tqdm==0.0.1")):
        d.build_train_corpus(str(out), packages=("tqdm==0.0.1",))
    with pytest.raises(HashHopError, match=re.escape("pip install no_such_package_xyz==1.0")):
        d.build_train_corpus(str(out), packages=("no_such_package_xyz==1.0",))
    with pytest.raises(HashHopError, match="NAME==VERSION"):
        d.build_train_corpus(str(out), packages=("tqdm",))
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written, not even a partial file


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path):
    version = importlib.metadata.version("numpy")
    for args in (["--out", str(tmp_path / "c.bin"), "--packages", f"numpy=={version}"], []):
        proc = subprocess.run([sys.executable, "-m", "hashhop.ltm2.data", *args], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("python -m hashhop.ltm2.data: error:")
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "hashhop.ltm2.data",
            "--out",
            str(tmp_path / "c.bin"),
            "--packages",
            f"tqdm=={importlib.metadata.version('tqdm')}",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "sha256 " + hashlib.sha256((tmp_path / "c.bin").read_bytes()).hexdigest() in ok.stdout


def test_hashhop_rows_ask_up_to_the_configured_number_of_queries(corpus_path):
    """task.extra.hashhop_max_queries: long rows can ask more queries (more supervised reads per row); the default
    keeps the rows of the shipped recipe exactly."""

    def queries(**extra) -> list[int]:
        x, y = d.mixture_batch(cfg(16384, corpus=corpus_path, mix={"hashhop": 1.0, "code": 0.0}, short_recall=0, **extra), 6, torch.Generator().manual_seed(1))
        texts = [bytes(row.tolist()).decode("ascii") for row in x]  # (the row's last byte, a newline, is a target)
        return [len(parse_completion("COMPLETION:" + text.split("COMPLETION:")[-1])[2]) for text in texts]

    default, explicit, many = queries(), queries(hashhop_max_queries=16), queries(hashhop_max_queries=64)
    assert default == explicit and max(default) <= 16
    assert max(many) > 16 and min(many) >= 2
    for bad in (1, 5000, True, "8"):
        with pytest.raises(HashHopError, match="hashhop_max_queries"):
            d.mixture_batch(cfg(512, corpus=corpus_path, hashhop_max_queries=bad), 1, torch.Generator())


def shared_ends(hashes: list[str], k: int) -> int:
    """Pairs of hashes with the same first or last ``k`` characters."""
    heads, tails = Counter(h[:k] for h in hashes), Counter(h[-k:] for h in hashes)
    return sum(n * (n - 1) // 2 for n in (*heads.values(), *tails.values()))


def test_near_miss_rows_share_ends_as_a_long_context_does(corpus, corpus_path):
    """near_miss rewrites some hashes to keep another's first or last 1-8 characters: distinct, same length, same
    alphabet, each sharing its ends with a hash that was kept; random hashes hardly ever do."""
    rng = np.random.default_rng(0)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    hashes = ["".join(rng.choice(list(alphabet), 16)) for _ in range(400)]
    rewrite = d.near_miss_hashes(rng, hashes, alphabet)
    new = [rewrite.get(h, h) for h in hashes]
    assert 0.2 * len(hashes) < len(rewrite) < 0.8 * len(hashes) and len(set(new)) == len(new)
    assert all(len(h) == 16 and set(h) <= set(alphabet) for h in new)
    kept = [h for h in hashes if h not in rewrite]
    for h in rewrite.values():
        assert any(h[0] == p[0] or h[-1] == p[-1] for p in kept)
    assert shared_ends(new, 3) > 20 * max(1, shared_ends(hashes, 3))
    assert d.near_miss_hashes(rng, ["ab"], "ab") == {}  # nothing to be a near miss of
    built = [d.build_hashhop(seed, 4097, corpus, near_miss=1.0) for seed in range(20)]
    plain = [d.build_hashhop(seed, 4097, corpus) for seed in range(20)]

    def ends(b) -> float:
        keys = [k for k, _, _ in parse_prompt(b.meta["prompt"])]
        return shared_ends(keys, 2) / len(keys)

    near, random = np.array([ends(b) for b in built]), np.array([ends(b) for b in plain])  # same specs, seed by seed
    assert [b.meta["spec"] for b in built] == [b.meta["spec"] for b in plain]
    assert np.mean(near > random) > 0.7 and near.mean() > random.mean() + 0.2
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(HashHopError, match="hashhop_near_miss"):
            d.mixture_batch(cfg(512, corpus=corpus_path, hashhop_near_miss=bad), 1, torch.Generator())


def test_needle_options_reach_the_mixture_rows(corpus_path):
    """task.extra.needle_far_keys / needle_max_asked change the needle rows' questions (the defaults keep the
    shipped recipe's rows exactly); needle_reads adds read targets on the answers' bytes without changing the text."""
    mix = {"needle": 1.0, "code": 0.0}

    def rows(**extra):
        return d.mixture_batch(cfg(8192, corpus=corpus_path, mix=mix, short_recall=0, **extra), 6, torch.Generator().manual_seed(2))

    plain, explicit = rows(), rows(needle_far_keys=0.0, needle_max_asked=2)
    assert all(torch.equal(a, b) for a, b in zip(plain, explicit))
    far = rows(needle_far_keys=1.0, needle_max_asked=16)
    texts = [bytes(row.tolist()).decode("ascii", "replace") for row in far[0]]
    assert sum(any(aside in t for aside in d.NEEDLE_ASIDES) for t in texts) == len(texts)
    answered = (far[1] != IGNORE).sum(dim=1)
    assert answered.float().mean() > 2 * (plain[1] != IGNORE).sum(dim=1).float().mean()
    x, y, entries = rows(needle_far_keys=1.0, needle_max_asked=16, needle_reads=True, read_targets=True)
    assert torch.equal(x, far[0]) and torch.equal(y, far[1])
    jumps = entries[..., 0, d.JUMP, 0]  # the first read's JUMP target for the input at each position
    found = (jumps >= 0).nonzero().tolist()
    assert found
    for row, p in found:  # the entry read holds the byte the position predicts: context byte entry + 1 == byte p + 1
        assert x[row, jumps[row, p] + 1] == y[row, p] and jumps[row, p] < p
    no_reads = rows(needle_far_keys=1.0, needle_max_asked=16, read_targets=True)[2]
    assert (no_reads < 0).all()
    x, y, held = rows(needle_far_keys=1.0, needle_max_asked=16, needle_reads=True, needle_hold=True, read_targets=True)
    assert torch.equal(x, far[0]) and torch.equal(y, far[1])  # holds: more targets, the same text
    more = (held[..., 0, d.JUMP, 0] >= 0) & (jumps < 0)
    assert more.sum() > 2 * (jumps >= 0).sum() and ((held >= 0) | (entries < 0)).all()
    for row, p in more.nonzero().tolist():  # in a question, before its answer: the needle read from the key on
        assert y[row, p] == IGNORE or x[row, held[row, p, 0, d.JUMP, 0] + 1] == y[row, p]
    for key, bad in (("needle_far_keys", 2), ("needle_far_keys", True), ("needle_max_asked", 1), ("needle_max_asked", 300), ("needle_reads", 1), ("needle_hold", 1), ("needle_hold", True)):
        with pytest.raises(HashHopError, match=key):
            d.mixture_batch(cfg(512, corpus=corpus_path, **{key: bad}), 1, torch.Generator())
