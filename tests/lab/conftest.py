"""Fixtures of the lab's tests: a training run killed part way (the tiny config is in lab_helpers.py)."""

import pytest

from hashhop.lab import train as train_module


@pytest.fixture
def run_interrupted(monkeypatch):
    """``run_interrupted(cfg, out_dir)``: train until the third evaluation (step 30 with eval_every=10, after the
    step-20 checkpoint), where a Ctrl-C arrives; the real evaluation is put back afterwards."""

    def run(cfg, out_dir: str) -> None:
        real_evaluate, calls = train_module.evaluate_batches, []

        def crash_on_third(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real_evaluate(*args, **kwargs)

        monkeypatch.setattr(train_module, "evaluate_batches", crash_on_third)
        try:
            with pytest.raises(KeyboardInterrupt):
                train_module.train_run(cfg, out_dir, progress=False)
        finally:
            monkeypatch.setattr(train_module, "evaluate_batches", real_evaluate)

    return run
