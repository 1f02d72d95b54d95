"""The toy rungs measured: NFE-quality curves of the six integrators with and without DLG, and the controls.

``python -m dmcmc_edu ladder --target ring --out DIR`` runs :func:`run_ladder`.
Every *point* of the sweep is one sampler with one setting that produces
``n`` outputs; it records its seed, its settings, its counted NFE ledger and
every metric of :mod:`dmcmc_edu.evaluation.metrics` (plus the chain metrics for DLG).
The kinds of points:

``noise``
    an integrator of the paper from ``sigma_max`` (vanilla sampling), over a
    range of step counts; KAR1/KAR2 also with the paper's extra Tweedie step
    after the last Euler step to 0 (``final_tweedie="always"``).
``schedule`` (control i)
    the same integrator from ``sigma_max`` with a re-allocated schedule: one
    probability-flow Euler (DDIM) step from ``sigma_max`` straight down to
    ``sigma_mid``, then the integrator's own schedule from ``sigma_mid``.  It
    spends one evaluation where vanilla sampling spends many at high sigma,
    which is what DLG saves too -- without any chain.
``restart`` (control ii)
    restart without MCMC: a coarse sample (KAR1 with ``coarse_steps`` steps
    from ``sigma_max``), noise added up to a fixed small ``sigma_restart``,
    then the integrator from there.  Independent outputs, no classifier.
``dlg``
    :class:`~dmcmc_edu.core.sampler.DMCMCSampler` with the integrator denoising
    each chain state from its own sigma, over a small grid of (sigma-update,
    x-update, eta, eta_rel, n_skip, steps, outputs per chain, initialisation).
    Chains are refreshed from noise after ``outputs_per_chain`` outputs (a new
    generation of chains, initialised as the paper does); the full ledger
    counts every initialisation.

NFE on the x-axis is the **full ledger** per output (initialisation and
burn-in amortised, classifier evaluations counted as one evaluation each);
the paper's accounting is stored beside it.  ``nfe_per_independent`` divides
the full NFE per output by the measured effective-sample-size ratio of the
output component labels (1 for independent outputs).

The exact mixture oracle is evaluated through :class:`~dmcmc_edu.targets.SpectralMixture`, which
gives the same values as :class:`~dmcmc_edu.targets.GaussianMixture` (tested
to 1e-9) from each component's eigenbasis and is 10-100x faster on the
sweeps' batches.

The package's parts: :mod:`.plan` (the points, their ids, seeds and step
counts), :mod:`.run` (the context, the runners, the resumable driver and its
worker processes) and :mod:`.report` (CSV table, findings, Fig. 3).  Every
public name is importable from ``dmcmc_edu.experiments.ladder`` itself.
"""

from __future__ import annotations

from dmcmc_edu.experiments.ladder.plan import (
    KINDS,
    build_plan,
    dlg_settings,
    paper_eta,
    point_id,
    point_label,
    point_seed,
)
from dmcmc_edu.experiments.ladder.report import (
    BUDGETS,
    LABEL_KEY,
    _failing,
    analyse,
    findings_markdown,
    plot_ladder,
    plot_modes_vs_nfe,
    plot_reach,
    plot_w2_vs_nfe,
    reach_text,
    write_csv,
)
from dmcmc_edu.experiments.ladder.run import (
    RUNNERS,
    LadderContext,
    _clean,
    refloor_sweep,
    run_ladder,
    run_point,
    sweep_floors,
    target_stem,
    train_classifier,
)
from dmcmc_edu.targets import SpectralMixture

__all__ = ["KINDS", "BUDGETS", "LABEL_KEY", "RUNNERS", "LadderContext", "SpectralMixture", "analyse", "build_plan",
           "dlg_settings", "findings_markdown", "paper_eta", "plot_ladder", "plot_modes_vs_nfe", "plot_reach",
           "plot_w2_vs_nfe", "point_id", "point_label", "point_seed", "reach_text", "refloor_sweep", "run_ladder",
           "run_point", "sweep_floors",
           "target_stem", "train_classifier", "write_csv",
           "_clean", "_failing"]  # the last two: used by bench/ scripts, notebooks 04/05 and the tests
