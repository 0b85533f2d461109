"""The evaluation harness: grid -> requests -> runner -> answers -> scores -> results file -> report.

``hashhop.evaluate(model, grid, ...)`` is the one call; the modules are its rooms:
``grid`` (cells, sizing, requests), ``templates`` (how a query becomes a request), ``run`` (the run loop and
:func:`evaluate`), ``store`` (results file and response cache), ``score`` (exact match and diagnosis),
``report`` (tables and plots), ``export`` (the grid as rows for other tools).
"""

from hashhop.eval.grid import Grid
from hashhop.eval.run import EvalResult, RunOptions, evaluate

__all__ = ["EvalResult", "Grid", "RunOptions", "evaluate"]
