"""An honest NFE ledger for a DMCMC run.

Every entry is *counted* (rows through the model or the classifier, by a
:class:`~dmcmc_edu.core.contract.CountingDenoiser` or the classifier's own
counter), never a formula; per-output figures divide by the number of outputs.
Two accountings, side by side:

* **paper** -- what the paper reports per output: Gibbs steps + integrator +
  Tweedie step (``n_skip + NFE(integrator) + 1`` for ULA);
* **full**  -- everything: the paper's parts plus the chains' initialisation
  and burn-in (amortised over all outputs) and the classifier's evaluations
  (each counted as one evaluation, although a classifier is usually much
  cheaper than the score network; the parts are reported separately).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["NFELedger"]


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

    def add(self, **rows: int) -> None:
        for k, v in rows.items():
            setattr(self, k, getattr(self, k) + int(v))

    def per_output(self) -> dict:
        """Per-output NFE of each part and of the paper's and the full accounting."""
        n = max(self.n_outputs, 1)
        parts = {"gibbs": self.gibbs / n, "denoise": self.denoise / n, "tweedie": self.tweedie / n,
                 "init_amortised": self.init / n, "classifier": self.classifier / n,
                 "classifier_init_amortised": self.classifier_init / n}
        paper = parts["gibbs"] + parts["denoise"] + parts["tweedie"]
        score_total = paper + parts["init_amortised"]
        full = score_total + parts["classifier"] + parts["classifier_init_amortised"]
        return {"parts": parts, "paper": paper, "score_evals": score_total, "full": full}

    def to_dict(self) -> dict:
        return {"totals_in_rows": asdict(self), "per_output": self.per_output(),
                "definition": "NFE = network evaluations per sample; per output = counted rows / n_outputs"}

    @classmethod
    def from_dict(cls, d: dict) -> "NFELedger":
        return cls(**d["totals_in_rows"])

    def summary(self) -> str:
        p = self.per_output()
        parts = ", ".join(f"{k} {v:.2f}" for k, v in p["parts"].items())
        return f"NFE per output: paper {p['paper']:.2f}, full {p['full']:.2f} ({parts})"
