"""The pointer's sequential walk (``follow_pointers``, compiled) against a plain Python reading of its rule."""

from __future__ import annotations

import math

import pytest
import torch

from hashhop.ltm2.model import POINTER_OFFSETS, follow_pointers


def walk_reference(q, keys, chosen, logits, sink, gated, per_confidence, delay):
    """The rule, one row and one position at a time in Python floats: candidate j is the entry POINTER_OFFSETS[j]
    after the previous position's most-weighted entry (if that was no sink and the entry is visible); a best entry that
    is a candidate too counts once (as the candidate); ties go to the candidates, then the first best entry."""
    b, heads, t, hk = q.shape
    k, m = chosen.shape[-1], gated.shape[-1]
    gated, per_confidence = gated.expand(b, heads, t, m), per_confidence.expand(b, heads, t, m)
    follow = torch.zeros(b, heads, t, m, dtype=torch.long)
    follow_logits = torch.full((b, heads, t, m), -math.inf)
    confidences = torch.zeros(b, heads, t)
    masked = logits.clone()
    for row in range(b):
        for head in range(heads):
            pointer, confidence = -1, 0.0
            for p in range(delay, t):
                own, nxt = [], []
                for j in range(m):
                    n = pointer + POINTER_OFFSETS[j]
                    ok = pointer >= 0 and n <= p - delay
                    nxt.append(n if ok else None)
                    content = float(q[row, head, p] @ keys[row, head, n]) if ok else -math.inf
                    follow[row, head, p, j] = n if ok else 0
                    follow_logits[row, head, p, j] = content
                    own.append(content + float(gated[row, head, p, j]) + float(per_confidence[row, head, p, j]) * confidence if ok else -math.inf)
                best_row = [(-math.inf if int(chosen[row, head, p, i]) in nxt else float(logits[row, head, p, i])) for i in range(k)]
                masked[row, head, p] = torch.tensor(best_row)
                best = max(range(k), key=lambda i: (best_row[i], -i))
                own_best = max(range(m), key=lambda j: (own[j], -j))
                s = float(sink[row, head, p])
                top = max(best_row[best], own[own_best], s)
                total = sum(math.exp(x - top) for x in best_row + own) + math.exp(s - top)
                confidences[row, head, p] = confidence
                own_wins = own[own_best] >= best_row[best]
                winner = own[own_best] if own_wins else best_row[best]
                if winner > s:
                    pointer = nxt[own_best] if own_wins else int(chosen[row, head, p, best])
                    confidence = math.exp(winner - top) / total
                else:
                    pointer, confidence = -1, 0.0
    return follow, follow_logits, confidences, masked


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("delay", [1, 2])
@pytest.mark.parametrize("gate", [0.0, 3.0])
def test_follow_pointers_matches_the_rule(m, delay, gate):
    torch.manual_seed(m * 10 + delay + int(gate))
    b, heads, t, hk, k = 2, 2, 48, 8, 4
    q = torch.randn(b, heads, t, hk) * 2
    keys = torch.nn.functional.normalize(torch.randn(b, heads, t, hk), dim=-1)
    chosen = torch.zeros(b, heads, t, k, dtype=torch.long)
    logits = torch.full((b, heads, t, k), -math.inf)
    for p in range(delay, t):
        seen = p - delay + 1
        ids = torch.randperm(seen)[:k] if seen > 1 else torch.zeros(1, dtype=torch.long)
        chosen[:, :, p, : len(ids)] = ids
        if p > delay and seen > k:  # often a candidate among the best entries too (to be masked): the entry after one
            chosen[:, :, p, 0] = torch.clamp(chosen[:, :, p - 1, 1] + 1, max=p - delay)  # the last position chose
        logits[:, :, p, : len(ids)] = torch.einsum("bhd,bhnd->bhn", q[:, :, p], keys[:, :, chosen[0, 0, p, : len(ids)]])
    sink = torch.randn(b, heads, t)
    gated = torch.randn(1, heads, 1, m) + gate
    per_confidence = torch.randn(b, heads, t, m)
    want = walk_reference(q, keys, chosen, logits, sink, gated, per_confidence, delay)
    got_logits = logits.clone()
    got = follow_pointers(q, keys, chosen, got_logits, sink, gated, per_confidence, delay)
    assert torch.equal(got[0], want[0])
    assert torch.allclose(got[1], want[1], atol=1e-5) and torch.equal(got[1].isinf(), want[1].isinf())
    assert torch.allclose(got[2], want[2], atol=1e-5)
    assert torch.equal(got_logits.isinf(), want[3].isinf())  # best entries that are candidates too: masked in place
    assert (got[2] > 0).any() and (got[0] > 0).any()  # the pointer did follow (the test can tell)
    assert (got_logits.isinf() & ~logits.isinf()).any()  # and some best entries were candidates too
