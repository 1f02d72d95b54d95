"""An honest NFE ledger for a DMCMC run.

Every entry is *counted* (rows through the model, the classifier or an analytic oracle, by a
:class:`~dmcmc_edu.core.contract.CountingDenoiser` or the classifier's own counter), never a formula; per-output
figures divide by the number of outputs.  The accountings, side by side (keys of :meth:`NFELedger.per_output`):

* ``paper`` -- what the paper reports per output: Gibbs steps + integrator + Tweedie step
  (``n_skip + NFE(integrator) + 1`` for ULA);
* ``score_evals`` -- every evaluation of the score model: the paper's parts plus the chains' initialisation and
  burn-in (amortised over all outputs);
* ``full`` -- "one call = one NFE": ``score_evals`` plus the classifier's evaluations (each counted as one
  evaluation, although a classifier is usually much cheaper than the score network; the parts are reported
  separately);
* ``oracle`` -- rows through the analytic model's oracle methods, which no trained model offers: the exact
  sigma-posterior ``sigma_log_posterior`` (the ``"exact"`` sigma-update: one row = one sample's posterior over the
  whole noise-level grid) and the log-density ``log_prob`` (MALA's accept/reject test, two rows per chain and
  step).  They are *not* part of ``full`` (so that ``full`` means what it always meant); a run that uses them
  gets them for free there, and this column says how many it used;
* ``cost_weighted`` (only with ``prices``) -- each row priced at what it costs, in units of one score-model row:
  ``score_evals + price["classifier"] * classifier rows + price["oracle_posterior"] * posterior rows +
  price["oracle_log_prob"] * log-density rows`` (per output, initialisation amortised).  The prices are measured,
  not assumed (``bench/ledger_costs.py``: wall time or FLOPs of one row relative to one row of the score model
  the run uses, on the same batch).  All prices 0 give ``score_evals``; a classifier price of 1 and oracle prices
  of 0 give ``full``.

A ledger written before the oracle rows were counted (an older ``to_dict``) reads back with its oracle fields
``None`` ("not counted"), never 0: its ``oracle`` is ``None``, and so is a ``cost_weighted`` total that would need
them at a price above 0.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

__all__ = ["NFELedger", "ORACLE_FIELDS", "PRICE_KEYS", "check_prices"]

ORACLE_FIELDS = ("oracle_posterior_init", "oracle_posterior", "oracle_log_prob_init", "oracle_log_prob")
"""The ledger's oracle rows (exact sigma-posterior, log-density; during initialisation/burn-in and output rounds)."""

PRICE_KEYS = {"classifier": ("classifier_init", "classifier"),
              "oracle_posterior": ("oracle_posterior_init", "oracle_posterior"),
              "oracle_log_prob": ("oracle_log_prob_init", "oracle_log_prob")}
"""Each priced kind of row and the ledger fields (initialisation, output rounds) that hold its rows."""


def check_prices(prices) -> dict:
    """Validate prices ``{"classifier": r, "oracle_posterior": r2, "oracle_log_prob": r3}`` (any subset).

    A price is the cost of one row of that kind in units of one score-model row: a finite number >= 0.  Returns
    a plain dict of floats; anything else raises ``ValueError`` with one line naming the bad entry.
    """
    if not isinstance(prices, dict):
        raise ValueError(f"prices must be a dict such as {{'classifier': 0.08}}, got {type(prices).__name__}")
    out = {}
    for key, value in prices.items():
        if key not in PRICE_KEYS:
            raise ValueError(f"unknown price {key!r}; known: {', '.join(PRICE_KEYS)}")
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if not ok:
            raise ValueError(f"price of {key!r} must be a finite number >= 0 (the cost of one row in score-model "
                             f"evaluations), got {value!r}")
        out[key] = float(value)
    return out


def _per(rows, n: int):
    return None if rows is None else rows / n


@dataclass
class NFELedger:
    """Counted evaluations (in rows) per part of a DMCMC run (the columns: see the module docstring)."""

    n_chains: int = 0
    n_outputs: int = 0
    init: int = 0  # score evaluations of the initial integrator run and the burn-in
    gibbs: int = 0  # score evaluations of the Gibbs steps that produce outputs
    denoise: int = 0  # score evaluations of the denoising integrator runs
    tweedie: int = 0  # score evaluations of the final Tweedie steps
    classifier_init: int = 0  # classifier evaluations during initialisation / burn-in
    classifier: int = 0  # classifier evaluations during output Gibbs steps
    oracle_posterior_init: int | None = 0  # rows through the exact sigma-posterior during initialisation / burn-in
    oracle_posterior: int | None = 0  # rows through the exact sigma-posterior during output Gibbs steps
    oracle_log_prob_init: int | None = 0  # rows through the log-density (MALA) during initialisation / burn-in
    oracle_log_prob: int | None = 0  # rows through the log-density (MALA) during output Gibbs steps

    def add(self, **rows: int) -> None:
        """Add counted rows to the named fields (a field that is ``None``, not counted, stays ``None``)."""
        for k, v in rows.items():
            have = getattr(self, k)
            setattr(self, k, None if have is None else have + int(v))

    def per_output(self, prices: dict | None = None) -> dict:
        """Per-output rows of each part and of each accounting (module docstring); ``prices`` adds ``cost_weighted``.

        Keys: ``parts`` (score model and classifier, as always), ``paper``, ``score_evals``, ``full``,
        ``oracle_parts``, ``oracle`` and, with ``prices`` (:func:`check_prices`), ``prices`` and ``cost_weighted``.
        A price may be left out for a kind of row the run did not make; otherwise its absence is refused.
        """
        n = max(self.n_outputs, 1)
        parts = {"gibbs": self.gibbs / n, "denoise": self.denoise / n, "tweedie": self.tweedie / n,
                 "init_amortised": self.init / n, "classifier": self.classifier / n,
                 "classifier_init_amortised": self.classifier_init / n}
        paper = parts["gibbs"] + parts["denoise"] + parts["tweedie"]
        score_total = paper + parts["init_amortised"]
        full = score_total + parts["classifier"] + parts["classifier_init_amortised"]
        oracle_parts = {"oracle_posterior": _per(self.oracle_posterior, n),
                        "oracle_posterior_init_amortised": _per(self.oracle_posterior_init, n),
                        "oracle_log_prob": _per(self.oracle_log_prob, n),
                        "oracle_log_prob_init_amortised": _per(self.oracle_log_prob_init, n)}
        values = list(oracle_parts.values())
        oracle = None if any(v is None for v in values) else sum(values)
        out = {"parts": parts, "paper": paper, "score_evals": score_total, "full": full,
               "oracle_parts": oracle_parts, "oracle": oracle}
        if prices is not None:
            p = check_prices(prices)
            out["prices"] = p
            out["cost_weighted"] = self._cost_weighted(p, score_total, n)
        return out

    def _cost_weighted(self, prices: dict, score_total: float, n: int):
        total = score_total
        for key, names in PRICE_KEYS.items():
            rows = [getattr(self, name) for name in names]
            if key not in prices:
                if any(r is not None and r > 0 for r in rows):
                    raise ValueError(f"no price for {key!r} although this run made {sum(r or 0 for r in rows)} "
                                     f"rows of it: give prices[{key!r}] (0 = free)")
                if any(r is None for r in rows):
                    return None  # not counted, not priced: unknown
                continue
            if prices[key] == 0:
                continue
            if any(r is None for r in rows):
                return None  # rows not counted when the ledger was written
            total += prices[key] * sum(rows) / n
        return total

    def to_dict(self, prices: dict | None = None) -> dict:
        """Plain data: the counted rows, the per-output columns (with ``prices``: the cost-weighted one)."""
        return {"totals_in_rows": asdict(self), "per_output": self.per_output(prices),
                "definition": "NFE = network evaluations per sample; per output = counted rows / n_outputs"}

    @classmethod
    def from_dict(cls, d: dict) -> "NFELedger":
        """Read :meth:`to_dict`'s layout; oracle fields missing from an older ledger read ``None`` (not counted)."""
        rows = dict(d["totals_in_rows"])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(rows) - known)
        if unknown:
            raise ValueError(f"not an NFE ledger: unknown field(s) {', '.join(unknown)} in totals_in_rows")
        for name in ORACLE_FIELDS:
            rows.setdefault(name, None)
        return cls(**rows)

    def summary(self, prices: dict | None = None) -> str:
        """One line: the paper's and the full count with the parts; with ``prices`` also the oracle and cost-weighted
        columns."""
        p = self.per_output(prices)
        parts = ", ".join(f"{k} {v:.2f}" for k, v in p["parts"].items())
        line = f"NFE per output: paper {p['paper']:.2f}, full {p['full']:.2f} ({parts})"
        if prices is not None:
            fmt = lambda v: "not counted" if v is None else f"{v:.2f}"  # noqa: E731
            line += f"; oracle rows {fmt(p['oracle'])}, cost-weighted {fmt(p['cost_weighted'])}"
        return line
