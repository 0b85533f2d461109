"""Ablations of the LTM reference model: what ``builtin:ltm``'s HashHop scores come from.

Each function builds a network from the real :class:`~hashhop.ltm.model.LTM` class, to run through the
real engines (``benchmarks/ltm_ablations.py`` measures them side by side, ``tests/ltm/test_ablations.py``
checks them):

* :func:`random_encoder`: the trained weights with the character encoder (``char_embed``, ``word_proj``,
  ``word_out``) re-initialised at random. Keys are then random vectors of the words, and the trained
  controller reads the completion header through keys it has never seen.
* :func:`untrained`: ``LTM()`` as initialised, never trained.
* :func:`hand_set`: never trained; every weight that matters is written by hand: the value of an entry
  is the next word (offset +1 gets all the mass), the role score is high exactly when the separator
  after a word starts with `` = `` (a word used as a key), the read temperature is large, and the
  controller maps the header's ``(Hops, CoT)`` to the read depth of each answer slot by a written table.
  The character encoder is left random: random keys of distinct words are far enough apart.
* :func:`dict_baseline`: a Python dict that answers a native HashHop request, for comparison.

If these score like the trained weights, HashHop's scores come from the wiring (words cut at
``[0-9A-Za-z]``, a value is the next word, a fixed number of reads, the header read from its words),
not from anything learnt about long contexts.
"""

from __future__ import annotations

import copy

import torch

from hashhop.ltm.model import LTM, LTMConfig
from hashhop.ltm.text import END
from hashhop.task.grammar import links_in, parse_native_request


def _words_chars(words: list[str], width: int) -> torch.Tensor:
    """(n, width) END-padded character codes of the given words."""
    out = torch.full((len(words), width), END, dtype=torch.long)
    for i, word in enumerate(words):
        for j, ch in enumerate(word[:width]):
            out[i, j] = ord(ch)
    return out


def _reinit_encoder(model: LTM, seed: int) -> None:
    """Re-draw the character encoder's weights from the distributions ``LTM.__init__`` uses, seeded by ``seed``."""
    cfg = model.cfg
    fresh_gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embed = torch.randn(model.char_embed.weight.shape, generator=fresh_gen)
        embed[END] = 0.0  # the padding row, as nn.Embedding leaves it
        model.char_embed.weight.copy_(embed)
        width = cfg.max_word_chars
        model.word_proj.copy_(torch.randn(model.word_proj.shape, generator=fresh_gen) / (cfg.d_char * width) ** 0.5)
        bound = 1 / cfg.d_key**0.5  # nn.Linear's default init range (kaiming uniform with a = sqrt(5))
        model.word_out.weight.copy_(torch.empty(model.word_out.weight.shape).uniform_(-bound, bound, generator=fresh_gen))
        model.word_out.bias.copy_(torch.empty(model.word_out.bias.shape).uniform_(-bound, bound, generator=fresh_gen))


def random_encoder(model: LTM, seed: int = 0, table_controller: bool = False) -> LTM:
    """A copy of ``model`` whose character encoder (char_embed, word_proj, word_out) is random again.

    The trained controller reads the completion header through that encoder, so it now sees keys it was
    never trained on; ``table_controller=True`` also replaces the controller by the written table
    (:func:`set_controller_table`), keeping the trained role scorer, temperature and value offsets."""
    out = copy.deepcopy(model)
    _reinit_encoder(out, seed)
    if table_controller:
        set_controller_table(out)
    return out.eval()


def untrained(seed: int = 0, cfg: LTMConfig | None = None) -> LTM:
    """``LTM()`` with PyTorch's fresh initialisation from ``seed``: no training at all."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LTM(cfg).eval()


# The table the hand-set controller holds: (Hops, CoT) -> read depth of each answer slot (1-based).
# Chain of thought writes one hash per hop (depths 1..H); without it, one hash at depth H.
def hops_to_depth(max_hops: int) -> dict[tuple[int, bool], list[int]]:
    table = {}
    for hops in range(1, max_hops + 1):
        table[(hops, True)] = list(range(1, hops + 1))
        table[(hops, False)] = [hops]
    return table


def set_controller_table(model: LTM, big: float = 50.0) -> LTM:
    """Write the controller by hand (in place): two header reads aimed at the words ``Hops`` and ``CoT`` through
    the model's own encoder, then one hidden unit per row of :func:`hops_to_depth` that fires only when both
    following words match the row, and whose output logits are +-``big`` for that row's depths and stops."""
    cfg = model.cfg
    width = cfg.max_word_chars
    table = hops_to_depth(cfg.max_hops)
    first, second = model.controller[0], model.controller[2]
    if len(table) > first.out_features:
        raise ValueError("the controller is too narrow for the depth table")
    with torch.no_grad():
        model.header_queries.copy_(model.encode(_words_chars(["Hops", "CoT"], width)))
        model.log_header_tau.fill_(float(torch.tensor(200.0).log()))  # each header read lands on its word
        hop_words = [str(h) for h in range(1, cfg.max_hops + 1)]
        cot_words = ["True", "False"]
        hop_keys = model.encode(_words_chars(hop_words, width))
        cot_keys = model.encode(_words_chars(cot_words, width))
        # A row's unit fires only when both following words match it. With ``worst`` the largest cosine between
        # two different words of a column: both match -> sum of cosines 2; one mismatch -> <= 1 + worst.
        worst = max(float((keys @ keys.T - 2 * torch.eye(len(keys))).max()) for keys in (hop_keys, cot_keys))
        delta = (1.0 - worst) / 2
        gain = 20.0 / delta  # the matching row's unit is at +20, every other row's at <= -20 (gelu ~ 0)
        for layer in (first, second):
            layer.weight.zero_()
            layer.bias.zero_()
        out = second.weight.view(cfg.max_slots, cfg.max_hops + 1, -1)  # (slot, depths | continue, unit)
        d = cfg.d_key
        for unit, ((hops, cot), depths) in enumerate(sorted(table.items())):
            first.weight[unit, :d] = gain * hop_keys[hops - 1]
            first.weight[unit, d:] = gain * cot_keys[cot_words.index(str(cot))]
            first.bias[unit] = -gain * (2.0 - delta)
            scale = big / 20.0  # this row's output logits are +-big
            for slot, depth in enumerate(depths[: cfg.max_slots]):
                out[slot, depth - 1, unit] = scale
                out[slot, cfg.max_hops, unit] = scale if slot + 1 < len(depths) else -scale
    return model


def hand_set(seed: int = 0, cfg: LTMConfig | None = None, tau: float = 1000.0, role_gap: float = 40.0) -> LTM:
    """An LTM whose weights are set by hand, with no training (see the module docstring).

    Random character encoder from ``seed``; role = ``role_gap`` for an entry whose separator starts with
    `` = ``, about 0 otherwise; read temperature ``tau``; value = the next word; controller = the table
    :func:`hops_to_depth` over Hops 1..``cfg.max_hops`` (deeper chains cannot be expressed: ``max_hops`` reads)."""
    model = untrained(seed, cfg)
    cfg = model.cfg
    big = 50.0
    with torch.no_grad():
        # -- value = next word: offset +1 gets all the mass ------------------------------------------------
        model.offset_logits.copy_(torch.tensor([big if o == 1 else -big for o in cfg.value_offsets]))
        model.log_tau.fill_(float(torch.tensor(tau).log()))

        # -- role: "the separator after this word starts with ' = '" ---------------------------------------
        # Character embeddings: ' ' -> e0, '=' -> e1, every other non-END character -> e2 (END stays 0).
        model.sep_embed.weight.zero_()
        model.sep_embed.weight[1:, 2] = 1.0
        model.sep_embed.weight[ord(" "), :] = 0.0
        model.sep_embed.weight[ord(" "), 0] = 1.0
        model.sep_embed.weight[ord("="), :] = 0.0
        model.sep_embed.weight[ord("="), 1] = 1.0
        # Hidden unit 0 counts the matches of " = " at positions 0, 1, 2 (+1 each) and subtracts 3 for any
        # other character there: 3 exactly for " = " and " = '", <= 0 for every other separator.
        model.sep_proj.zero_()
        for position, expected in enumerate((0, 1, 0)):  # ' ', '=', ' '
            if position >= cfg.separator_chars:
                break
            for code in range(3):
                model.sep_proj[position, code, 0] = 1.0 if code == expected else -3.0
        # role = role_gap / 3 * gelu(unit0): role_gap for " = ", |role| < 0.01 otherwise (gelu(x <= 0) ~ 0).
        model.sep_out.weight.zero_()
        model.sep_out.weight[0, 0] = role_gap / 3.0  # gelu(3) = 2.996 -> role_gap
        model.sep_out.bias.zero_()

    set_controller_table(model, big)
    return model.eval()


def dict_baseline(text: str) -> str:
    """Answer a native HashHop request (prompt, ``COMPLETION:`` header, ``QUERY = '``) with a Python dict."""
    links = links_in(text)
    hops, cot, key = parse_native_request(text) or (1, False, "")
    path = []
    for _ in range(hops):
        key = links.get(key, "")
        path.append(key)
    return " = ".join(path) if cot else path[-1]
