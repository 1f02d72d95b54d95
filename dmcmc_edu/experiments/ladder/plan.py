"""What a ladder sweep runs: the points, their ids and seeds, and the step counts of each kind.

A *point* is a plain settings dict (``kind``, ``integrator``, steps and
options, and for DLG the sampler's settings).  Its id is the dict as sorted
JSON and its seed is derived from that id, so a point gives the same numbers
whichever sweep, order or worker runs it.  Nothing here runs a sampler: the
functions only need a few numbers of the sweep's context (``tau_min``, ``d``,
``diameter``, ``sigma_min``, ``learned``, ``classifier``).
"""

from __future__ import annotations

import inspect
import json
import zlib

from dmcmc_edu.core.integrators import PAPER_INTEGRATORS, rk45
from dmcmc_edu.solvers import MODERN_SOLVERS

__all__ = ["KINDS", "point_id", "point_seed", "point_label", "paper_eta", "dlg_settings", "build_plan"]

#: the kinds of points, in plotting order
KINDS = ("noise", "schedule", "restart", "dlg")

_KAR = ("kar1", "kar2")

# The few-step solvers of dmcmc_edu.solvers (issue 13): one evaluation per step and ends at 0 (NFE = steps), except
# Restart, whose options carry its restart interval: [N_restart, K, t_min, t_max] (the paper's CIFAR-10 band).
_MODERN = tuple(MODERN_SOLVERS)
_RESTART_SMALL = {"restarts": [[2, 1, 0.06, 0.3]]}  # 2 extra evaluations
_RESTART_PAPER = {"restarts": [[3, 2, 0.06, 0.3]]}  # 8 extra evaluations (the paper's CIFAR-10 setting)
_RK45_RTOL = inspect.signature(rk45).parameters["rtol"].default  # RK45's tolerance when a point sets none


def _modern_steps(integrator: str, which: str, fast: bool):
    """Step settings of the modern solvers: ``which`` is noise | short | control; ``[(steps, options)]``.

    Restart: NFE = 2 steps - 1 + 2 (small interval) or + 8 (the paper's); the others: NFE = steps.
    """
    if integrator == "restart":
        small, paper = _RESTART_SMALL, _RESTART_PAPER
        table = {"noise": ([(3, small), (18, paper)] if fast else
                           [(2, small), (3, small), (4, small), (5, small), (7, small), (10, small), (6, paper),
                            (10, paper), (18, paper), (25, paper), (50, paper)]),
                 "short": [(2, small)] if fast else [(2, small), (3, small), (4, paper)],
                 "control": [(2, small)] if fast else [(2, small), (3, small), (5, small), (9, small), (6, paper)]}
        return [(st, dict(op)) for st, op in table[which]]
    table = {"noise": (5, 20) if fast else (3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 35, 50, 100),
             "short": (3,) if fast else (2, 3, 4, 6),
             "control": (3,) if fast else (2, 3, 4, 6, 9, 14, 19)}
    return [(s, {}) for s in table[which]]


def point_id(settings: dict) -> str:
    """A stable, readable identifier of a point: its settings as sorted JSON."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def point_seed(base_seed: int, pid: str) -> int:
    """The seed of a point: a hash of its id and the sweep's base seed (recorded with the point)."""
    return (zlib.crc32(pid.encode()) + 1000003 * int(base_seed)) % (2**31 - 1)


def _steps_text(s: dict) -> str:
    opt = s.get("options") or s.get("integrator_options") or {}
    if "restarts" in opt:  # the Restart sampler: main steps + [N_restart x K] per interval
        return f"{s.get('steps')} st + " + "+".join(f"{r[0]}x{r[1]}" for r in opt["restarts"])
    if "rtol" in opt or s.get("integrator") == "rk45":  # adaptive RK45: its tolerance, never a step count
        return f"rtol={opt.get('rtol', _RK45_RTOL):g}"
    return f"{s.get('steps')} st"


def _dlg_label(s: dict, st: str) -> str:
    upd = {"exact": "exact", "classifier-argmax": "argmax", "classifier-sample": "cls-sample"}[s["sigma_update"]]
    parts = [s["integrator"], upd, s["x_update"], f"eta={s['eta']:.3g}"]
    if s.get("eta_rel"):
        parts.append(f"eta_rel={s['eta_rel']:.2g}")
    if s.get("steps_per_decade"):
        st += f" (+{s['steps_per_decade']:g}/decade)"
    parts += [f"skip={s.get('n_skip', 1)}", st, f"T={s['outputs_per_chain']}"]
    if s.get("prior_tilt"):
        parts.append(f"tilt={s['prior_tilt']:g}")
    if s.get("init_steps", 19) != 19:
        parts.append(f"init={s['init_steps']}")
    if s.get("final_tweedie") == "always":
        parts.append("+tweedie")
    return " ".join(parts)


def point_label(s: dict) -> str:
    """A short readable description of a point's settings."""
    st = _steps_text(s)
    if s["kind"] == "noise":
        return f"{s['integrator']} {st}" + (" +tweedie" if s.get("final_tweedie") == "always" else "")
    if s["kind"] == "schedule":
        return f"{s['integrator']} DDIM->{s['sigma_mid']:g}, {st}"
    if s["kind"] == "restart":
        return f"{s['integrator']} KAR1 {s['coarse_steps']} st, restart {s['sigma_restart']:g}, {st}"
    return _dlg_label(s, st)


# ----------------------------------------------------------------------------- step counts of each kind


def _noise_steps(integrator: str, fast: bool):
    """Step settings from sigma_max, NFE about 5 to 1000: ``[(steps, options)]``."""
    if integrator in _MODERN:
        return _modern_steps(integrator, "noise", fast)
    if integrator == "rk45":
        tols = (1e-2, 1e-4) if fast else (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
        return [(1, {"rtol": t, "atol": t}) for t in tols]
    if integrator in _KAR:  # NFE = 2 steps - 1
        return [(s, {}) for s in ((4, 12) if fast else (2, 3, 4, 5, 6, 8, 10, 12, 16, 25, 50, 100, 250, 500))]
    return [(s, {}) for s in ((16, 64) if fast else (4, 8, 16, 32, 64, 128, 256, 512, 999))]  # NFE = steps + 1


def _short_steps(integrator: str, fast: bool):
    """Short runs from a small or moderate sigma (controls and DLG denoising): ``[(steps, options)]``."""
    if integrator in _MODERN:
        return _modern_steps(integrator, "short", fast)
    if integrator == "rk45":
        return [(1, {"rtol": t, "atol": t}) for t in ((1e-2,) if fast else (1e-1, 1e-2, 1e-3))]
    if integrator in _KAR:
        return [(s, {}) for s in ((3,) if fast else (2, 3, 5, 8))]
    return [(s, {}) for s in ((8,) if fast else (4, 8, 16, 32))]


def _control_steps(integrator: str, fast: bool):
    """Step settings of the controls' integrator run (from sigma_mid or sigma_restart): ``[(steps, options)]``."""
    if fast:
        return _short_steps(integrator, fast)
    if integrator in _MODERN:
        return _modern_steps(integrator, "control", fast)
    if integrator == "rk45":
        return [(1, {"rtol": t, "atol": t}) for t in (1e-1, 1e-2, 1e-3, 1e-4)]
    if integrator in _KAR:
        return [(s, {}) for s in (2, 3, 5, 8, 12, 16)]
    return [(s, {}) for s in (4, 8, 16, 32, 64)]


# ----------------------------------------------------------------------------- the DLG grid


def paper_eta(ctx) -> float:
    """The toy's stand-in for the paper's absolute Langevin step: half the finest component variance.

    (The paper's eta = 0.8 belongs to CelebA-HQ pixels; ULA with an absolute step is stable below 4 tau_min.)
    """
    return 0.5 * ctx.tau_min


def _dlg_bases(ctx, integrator: str, short) -> tuple[dict, dict, dict]:
    """The three settings the DLG grid varies: the paper's, the small-step remedy and the mixing remedy.

    The "paper" points are an *adaptation* of the paper's settings to the toy targets: 200 noise levels (not
    1000), a one-stage burn-in of 10 steps at the main eta (not two stages), eta scaled to the target
    (:func:`paper_eta`) and the toolkit's block pick (not the authors' rule; see ``dmcmc_edu.core.pick``).
    The exact presets are in :mod:`dmcmc_edu.paper`.
    """
    eta_small = 0.08 * ctx.tau_min  # targets.dlg_config's eta
    eta_rel = (2.0 / ctx.d) ** (1.0 / 3.0)  # ... and its sigma-adapted part
    base = dict(kind="dlg", integrator=integrator)
    paper = dict(base, sigma_update="classifier-argmax", x_update="ula", eta=paper_eta(ctx), eta_rel=0.0,
                 init_steps=19, init_kick=0.5, burn_in=[[10, None]], final_tweedie="always",
                 tweedie_sigma=ctx.sigma_min, outputs_per_chain=20, tags=["paper"])
    remedy = dict(base, sigma_update="exact", x_update="ula" if ctx.learned else "mala", eta=eta_small,
                  eta_rel=eta_rel, n_skip=1, init_steps=19, init_kick=0.5, burn_in=[[10, None]], final_tweedie="auto")
    # the mixing remedy: MALA steps of the component variance (eta = tau_min) plus eta_rel sigma^2, exact sigma-update,
    # and more denoising steps for states picked at large sigma (steps_per_decade; not for the adaptive RK45)
    spd = {} if integrator == "rk45" else {"steps_per_decade": 3.0 if integrator in _KAR + _MODERN else 6.0}
    s_lo, o_lo = short[0]
    mix_remedy = dict(remedy, eta=ctx.tau_min, steps=s_lo, integrator_options=o_lo, tags=["remedy"], **spd)
    return paper, remedy, mix_remedy


def _dlg_fast(ctx, integrator: str, paper: dict, mix_remedy: dict, short, ula_eta_rel: float) -> list[dict]:
    """The ``--fast`` grid: the mixing remedy, plus the paper's setting (KAR2) and the classifier (KAR1)."""
    s_lo, o_lo = short[0]
    out = [dict(mix_remedy, outputs_per_chain=5)]
    if integrator == "kar2":
        out.append(dict(paper, n_skip=1, steps=s_lo, integrator_options=o_lo))
    if integrator == "kar1" and ctx.classifier is not None:
        out.append(dict(mix_remedy, sigma_update="classifier-sample", x_update="ula", eta_rel=ula_eta_rel,
                        outputs_per_chain=5))
    return out


def _dlg_paper_variants(integrator: str, paper: dict, short, ula_eta_rel: float) -> list[dict]:
    """The paper's DLG, then one remedy at a time on top of it.

    The paper: ULA with an absolute step, classifier argmax, persistent chains, the extra Tweedie step.  The
    remedies: a sampled sigma-update; sigma-adapted steps; fewer outputs per chain.
    """
    s_lo, o_lo = short[0]
    s_mid, o_mid = short[1] if len(short) > 1 else short[0]
    paper_steps = 1 if integrator == "rk45" else (19 if integrator in _KAR else 20)  # rk45: its default tolerance
    mid = dict(n_skip=1, steps=s_mid, integrator_options=o_mid)
    return [dict(paper, n_skip=10, steps=paper_steps, integrator_options={}),
            dict(paper, n_skip=1, steps=s_lo, integrator_options=o_lo),
            dict(paper, **mid),
            dict(paper, sigma_update="classifier-sample", tags=["remedy"], **mid),
            dict(paper, eta_rel=ula_eta_rel, tags=["remedy"], **mid),
            dict(paper, outputs_per_chain=2, tags=["remedy"], **mid)]


def _dlg_remedy_variants(remedy: dict, mix_remedy: dict, short, ula_eta_rel: float) -> list[dict]:
    """The remedies without the paper's settings: small exact steps, the mixing remedy and its variations."""
    out = []
    # targets.dlg_config's small steps (eta = 0.08 tau_min): exact, but chains barely move at small sigma
    for T in (2, 20):
        for st, op in (short[0], short[-1]):
            out.append(dict(remedy, steps=st, integrator_options=op, outputs_per_chain=T, tags=["remedy"]))
    # the mixing remedy over the number of outputs per chain (= periodic refresh from noise every T outputs)
    for T in (1, 2, 5, 10, 20):
        out.append(dict(mix_remedy, outputs_per_chain=T))
    if "steps_per_decade" in mix_remedy:
        out.append(dict(mix_remedy, outputs_per_chain=5, steps_per_decade=mix_remedy["steps_per_decade"] * 2 / 3))
    out.append(dict(mix_remedy, outputs_per_chain=5, n_skip=2))
    # chains held at small sigma by a tilted prior pi_i ∝ sigma_i^-0.5 (their sigma marginal is the prior)
    for T in (5, 20):
        out.append(dict(mix_remedy, outputs_per_chain=T, prior_tilt=0.5, init_kick=0.05))
    # the classifier in place of the exact posterior (ULA: a network has no log-density)
    for upd in ("classifier-sample", "classifier-argmax"):
        out.append(dict(mix_remedy, sigma_update=upd, x_update="ula", eta_rel=ula_eta_rel, outputs_per_chain=5))
    # a cheap initialisation (8-step KAR2, 5 burn-in steps) amortised over 10 outputs
    out.append(dict(mix_remedy, outputs_per_chain=10, init_steps=8, burn_in=[[5, None]]))
    return out


def _dlg_cheap_variants(mix_remedy: dict, short) -> list[dict]:
    """For the modern solvers: long chains with a cheap start, aimed at 10-20 NFE per independent sample.

    An 8-step KAR2 initialisation and 5 burn-in steps amortised over 10 or 20 outputs; the smallest and the
    second denoising setting; and chains held at small sigma by the tilted prior.
    """
    cheap = dict(mix_remedy, init_steps=8, burn_in=[[5, None]])
    s_mid, o_mid = short[1] if len(short) > 1 else short[0]
    return [dict(cheap, outputs_per_chain=20), dict(cheap, outputs_per_chain=10),
            dict(cheap, outputs_per_chain=20, steps=s_mid, integrator_options=o_mid),
            dict(cheap, outputs_per_chain=20, prior_tilt=0.5, init_kick=0.05)]


def dlg_settings(ctx, integrator: str, fast: bool) -> list[dict]:
    """The DLG grid for one integrator: the paper's settings and the remedies (see the package docstring)."""
    ula_eta_rel = 0.5 * (2.0 / ctx.d) ** (1.0 / 3.0)  # unadjusted steps need more caution at large sigma
    short = _short_steps(integrator, fast)
    paper, remedy, mix_remedy = _dlg_bases(ctx, integrator, short)
    if fast:
        return _dlg_fast(ctx, integrator, paper, mix_remedy, short, ula_eta_rel)
    extra = _dlg_cheap_variants(mix_remedy, short) if integrator in _MODERN else []
    return (_dlg_paper_variants(integrator, paper, short, ula_eta_rel)
            + _dlg_remedy_variants(remedy, mix_remedy, short, ula_eta_rel) + extra)


# ----------------------------------------------------------------------------- the whole sweep


def _control_points(ctx, name: str, fast: bool) -> list[dict]:
    """Control (i), a DDIM step to sigma_mid, and control (ii), a restart from sigma_restart."""
    plan = []
    for smid in ((0.2,) if fast else (0.2, 0.4)):
        for st, op in _control_steps(name, fast):
            plan.append(dict(kind="schedule", integrator=name, sigma_mid=round(smid * ctx.diameter, 4), steps=st,
                             options=op, tags=["control"]))
    for cs in ((6,) if fast else ((3, 8) if name in _MODERN else (8,))):  # modern: also a 5-NFE coarse sample
        for sr in ((0.05,) if fast else (0.025, 0.1)):
            for st, op in _control_steps(name, fast)[: (1 if fast else 4)]:
                plan.append(dict(kind="restart", integrator=name, coarse_steps=cs,
                                 sigma_restart=round(sr * ctx.diameter, 4), steps=st, options=op, tags=["control"]))
    return plan


def build_plan(ctx, fast: bool = False, integrators=None) -> list[dict]:
    """Every point of a sweep, as settings dicts (see the package docstring).

    The controls' levels are fractions of the data diameter (``LadderContext.diameter``): sigma_mid in
    {0.2, 0.4} diameters (on the ring about 2 and 4: modes 3 apart, component std 0.25), sigma_restart in
    {0.025, 0.1} diameters (0.24 and 0.95 on the ring) after a coarse 8-step KAR1 sample.
    """
    plan = []
    for name in integrators or PAPER_INTEGRATORS:
        for st, op in _noise_steps(name, fast):
            plan.append(dict(kind="noise", integrator=name, steps=st, options=op))
        if name in _KAR:  # the paper's extra Tweedie step after a run that already ends with one
            for st in ((4,) if fast else (4, 8, 16, 50)):
                plan.append(dict(kind="noise", integrator=name, steps=st, options={}, final_tweedie="always",
                                 tags=["extra_tweedie"]))
        plan.extend(_control_points(ctx, name, fast))
        plan.extend(dlg_settings(ctx, name, fast))
    return plan
