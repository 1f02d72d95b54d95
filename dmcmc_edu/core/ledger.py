"""An honest NFE ledger for a DMCMC run.

Every entry is *counted* (rows through the model, the classifier or an oracle method, by a
:class:`~dmcmc_edu.core.contract.CountingDenoiser` or the classifier's own counter), never a formula; per-output
figures divide by the number of outputs.  The columns of :meth:`NFELedger.per_output`, side by side:

* **paper** -- what the paper reports per output: Gibbs steps + integrator + Tweedie step
  (``n_skip + NFE(integrator) + 1`` for ULA); **score_evals** -- every score-model row: the paper's parts plus the
  chains' initialisation and burn-in (amortised over all outputs);
* **full** -- "one call = one NFE": score_evals plus the classifier's rows, each counted as one evaluation;
* **oracle** -- rows through an analytic model's exact sigma-posterior (the ``exact`` sigma-update; a row is one
  sample's posterior over the whole grid) and its log-density (MALA: two rows per step); no trained model has them.
  Free in full; ``None`` (not counted) in a ledger written before they were counted;
* **cost_weighted** (given ``prices``) -- score_evals + price x rows of each kind, per output; a price is the
  measured cost of one row in score-model rows (``bench/ledger_costs.py``).  Prices 0 give score_evals, a classifier
  at 1 and free oracles give full; ``None`` where priced rows were not counted.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

__all__ = ["NFELedger", "ORACLE_FIELDS", "PRICE_KEYS", "check_prices"]

ORACLE_FIELDS = ("oracle_posterior_init", "oracle_posterior", "oracle_log_prob_init", "oracle_log_prob")
PRICE_KEYS = {"classifier": ("classifier_init", "classifier"), "oracle_posterior": ORACLE_FIELDS[:2],
              "oracle_log_prob": ORACLE_FIELDS[2:]}  # each priced kind of row: the ledger fields that hold it


def check_prices(prices) -> dict:
    """``{"classifier": r, "oracle_posterior": r2, "oracle_log_prob": r3}`` (any subset) as floats, each finite and
    >= 0; anything else is refused with a one-line ``ValueError``."""
    if not isinstance(prices, dict):
        raise ValueError(f"prices must be a dict such as {{'classifier': 0.08}}, got {type(prices).__name__}")
    for key, v in prices.items():
        if key not in PRICE_KEYS:
            raise ValueError(f"unknown price {key!r}; known: {', '.join(PRICE_KEYS)}")
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v >= 0):
            raise ValueError(f"price of {key!r} must be a finite number >= 0 (score-model rows per row), got {v!r}")
    return {k: float(v) for k, v in prices.items()}


@dataclass
class NFELedger:
    """Counted evaluations (in rows) per part of a DMCMC run."""

    n_chains: int = 0
    n_outputs: int = 0
    init: int = 0  # score evaluations of the initial integrator run and the burn-in
    gibbs: int = 0  # score evaluations of the Gibbs steps that produce outputs
    denoise: int = 0  # score evaluations of the denoising integrator runs
    tweedie: int = 0  # score evaluations of the final Tweedie steps
    classifier_init: int = 0  # classifier evaluations during initialisation / burn-in
    classifier: int = 0  # classifier evaluations during output Gibbs steps
    oracle_posterior_init: int | None = 0  # exact sigma-posterior rows during initialisation / burn-in
    oracle_posterior: int | None = 0  # exact sigma-posterior rows during output Gibbs steps
    oracle_log_prob_init: int | None = 0  # log-density rows (MALA) during initialisation / burn-in
    oracle_log_prob: int | None = 0  # log-density rows (MALA) during output Gibbs steps

    def add(self, **rows: int) -> None:
        for k, v in rows.items():  # a field not counted (None) stays so
            setattr(self, k, None if getattr(self, k) is None else getattr(self, k) + int(v))

    def per_output(self, prices: dict | None = None) -> dict:
        """Per-output NFE of each part and column (module docstring); ``prices`` (:func:`check_prices`) adds the
        cost-weighted total and may leave out a kind of row only if the run made none."""
        n = max(self.n_outputs, 1)
        parts = {"gibbs": self.gibbs / n, "denoise": self.denoise / n, "tweedie": self.tweedie / n,
                 "init_amortised": self.init / n, "classifier": self.classifier / n,
                 "classifier_init_amortised": self.classifier_init / n}
        paper = parts["gibbs"] + parts["denoise"] + parts["tweedie"]
        score_total = paper + parts["init_amortised"]
        full = score_total + parts["classifier"] + parts["classifier_init_amortised"]
        oracle = {f.replace("_init", "") + "_init_amortised" * f.endswith("_init"):
                  None if getattr(self, f) is None else getattr(self, f) / n for f in ORACLE_FIELDS}
        out = {"parts": parts, "paper": paper, "score_evals": score_total, "full": full, "oracle_parts": oracle,
               "oracle": None if None in oracle.values() else sum(oracle.values())}
        if prices is not None:
            out["prices"], cost = check_prices(prices), score_total
            for key, names in PRICE_KEYS.items():
                rows, price = [getattr(self, name) for name in names], out["prices"].get(key)
                if price is None and any(rows):
                    raise ValueError(f"no price for {key!r} although this run made {sum(r or 0 for r in rows)} "
                                     f"rows of it: give prices[{key!r}] (0 = free)")
                if None in rows and price != 0:  # rows not counted, at a price or none: unknown
                    cost = None
                elif price and cost is not None:
                    cost += price * sum(rows) / n
            out["cost_weighted"] = cost
        return out

    def to_dict(self, prices: dict | None = None) -> dict:
        return {"totals_in_rows": asdict(self), "per_output": self.per_output(prices),
                "definition": "NFE = network evaluations per sample; per output = counted rows / n_outputs"}

    @classmethod
    def from_dict(cls, d: dict) -> "NFELedger":
        unknown = sorted(set(d["totals_in_rows"]) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"not an NFE ledger: unknown field(s) {', '.join(unknown)} in totals_in_rows")
        return cls(**{**dict.fromkeys(ORACLE_FIELDS), **d["totals_in_rows"]})  # older ledgers: oracle not counted

    def summary(self) -> str:
        p = self.per_output()
        parts = ", ".join(f"{k} {v:.2f}" for k, v in p["parts"].items())
        return f"NFE per output: paper {p['paper']:.2f}, full {p['full']:.2f} ({parts})"
