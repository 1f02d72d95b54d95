"""Checks of assignment A4, Denoising Langevin Gibbs: the sigma-update, one Gibbs step, the smallest-sigma pick
and a mini DMCMC sampler, each against the library (:mod:`dmcmc_edu.core.sigma_updates`,
:func:`dmcmc_edu.core.dlg.dlg_step`, :func:`dmcmc_edu.core.pick.pick_smallest_sigma`,
:class:`dmcmc_edu.core.sampler.DMCMCSampler`).

The student's functions and their signatures (the notebook ``a4_denoising_langevin_gibbs`` states them):

* ``sigma_update(log_q, rule, generator) -> index [C]`` -- ``rule="argmax"`` (the paper) or ``"draw"`` (one draw per
  row from q, by inverting the CDF at ``u = torch.rand(C, generator=generator, dtype=torch.float64)``);
* ``gibbs_step(D, x, index, grid, eta, sigma_update, generator) -> (x', index')`` -- the unadjusted Langevin
  x-update at each chain's own ``sigma = grid[index]`` (noise ``torch.randn(x.shape, generator=...)``), then the
  sigma-update at ``x'``;
* ``pick_smallest(xs, indices, x_start, index_start) -> (x, index)`` -- the authors' rule;
* ``mini_dmcmc(D, x, index, grid, sigma_update, *, eta, n_skip, rounds, steps, sigma_min, generator, step_fn,
  pick_fn) -> (samples, chosen_sigma)``.

With the draws made in the library's order (x-update noise, then the sigma draw), the same seed gives the library's
numbers, so the checks compare values.  The sigma draw is also accepted when it only follows q in distribution.
"""
from __future__ import annotations

import torch

from dmcmc_edu.core.dlg import dlg_init, dlg_step
from dmcmc_edu.core.integrators import kar1
from dmcmc_edu.core.langevin import ula_step
from dmcmc_edu.core.pick import pick_smallest_sigma
from dmcmc_edu.core.sampler import DMCMCSampler
from dmcmc_edu.core.schedules import noise_level_grid
from dmcmc_edu.core.sigma_updates import make_sigma_update
from dmcmc_edu.grading.feedback import as_array, call_student, compare, fail, graded, hidden_seed, ok
from dmcmc_edu.targets import ExactLevelClassifier, dlg_config, ring

__all__ = ["check_sigma_update", "check_gibbs_step", "check_pick_smallest", "check_mini_dmcmc",
           "reference_gibbs_step", "reference_pick_smallest", "reference_mini_dmcmc", "FixedClassifier"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


class FixedClassifier:
    """A stand-in classifier whose ``log_probs`` are given rows ``log q`` (to call the library's updates)."""

    def __init__(self, log_q: torch.Tensor):
        self.log_q, self.n_levels = log_q, log_q.shape[1]

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_q


def _library_update(log_q: torch.Tensor, rule: str, generator) -> torch.Tensor:
    name = {"argmax": "classifier-argmax", "draw": "classifier-sample"}[rule]
    grid = noise_level_grid(0.01, 10.0, log_q.shape[1])
    update = make_sigma_update(name, classifier=FixedClassifier(log_q))
    return update(torch.zeros(log_q.shape[0], 1, dtype=torch.float64), grid, generator)


def _log_q_case(seed: int, C: int, L: int) -> torch.Tensor:
    g = _gen(seed)
    logits = 2.0 * torch.randn(C, L, generator=g, dtype=torch.float64)
    logits[0, 3] += 6.0  # one sharp row
    return torch.log_softmax(logits, dim=1)


def _indices(got, name: str, C: int, L: int) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        fail(f"{name} returned a {type(got).__name__}, expected a tensor of {C} level indices")
    if torch.is_floating_point(got):
        fail(f"{name} returned floating-point numbers ({got.dtype}); indices into the grid must be integers "
             "(torch.long), e.g. what argmax or searchsorted return")
    if tuple(got.shape) != (C,):
        fail(f"{name} returned shape {tuple(got.shape)}, expected one index per chain: ({C},)")
    if int(got.min()) < 0 or int(got.max()) >= L:
        fail(f"{name} returned index {int(got.max()) if int(got.max()) >= L else int(got.min())}, outside 0..{L - 1}"
             " (index 0 is sigma_max, index L-1 the smallest sigma)")
    return got.long()


def _draw_follows_q(student_fn, log_q: torch.Tensor, seed: int, n_rep: int = 4000) -> None:
    """Accept a draw that differs from the library's inverse-CDF draw when its frequencies follow q."""
    big = log_q.repeat_interleave(n_rep, dim=0)
    got = _indices(call_student(student_fn, "sigma_update", big, "draw", _gen(seed + 7)), "sigma_update(log_q, "
                   "'draw', generator)", big.shape[0], big.shape[1])
    q = torch.softmax(log_q, dim=1)
    for r in range(log_q.shape[0]):
        freq = torch.bincount(got[r * n_rep:(r + 1) * n_rep], minlength=q.shape[1]).double() / n_rep
        tol = 5 * (q[r] * (1 - q[r]) / n_rep).sqrt() + 2.0 / n_rep
        if ((freq - q[r]).abs() > tol).any():
            i = int(((freq - q[r]).abs() - tol).argmax())
            is_max = bool((got[r * n_rep:(r + 1) * n_rep] == q[r].argmax()).all())
            extra = (" -- every draw is the argmax: argmax and draw swapped?" if is_max else
                     " -- do you turn log q into probabilities with exp (or softmax) before the cumulative sum?")
            fail(f"sigma_update(log_q, 'draw', ...): over {n_rep} draws of row {r}, level {i} came up with frequency "
                 f"{float(freq[i]):.3f}, but q gives it {float(q[r, i]):.3f}{extra}")


def _draw_follows_q_per_call(student_fn, log_q: torch.Tensor, seed: int, n_calls: int = 600) -> None:
    """The same frequency test on the case's own batch (fewer rows than levels), one draw per row and call: a
    draw whose range depends on the batch (e.g. capped at the number of rows) shows here and not in a big batch."""
    got = torch.stack([_indices(call_student(student_fn, "sigma_update", log_q.clone(), "draw", _gen(seed + 100 + k)),
                                "sigma_update(log_q, 'draw', generator)", log_q.shape[0], log_q.shape[1])
                       for k in range(n_calls)])
    q = torch.softmax(log_q, dim=1)
    for r in range(log_q.shape[0]):
        freq = torch.bincount(got[:, r], minlength=q.shape[1]).double() / n_calls
        tol = 5 * (q[r] * (1 - q[r]) / n_calls).sqrt() + 2.0 / n_calls
        if ((freq - q[r]).abs() > tol).any():
            i = int(((freq - q[r]).abs() - tol).argmax())
            fail(f"sigma_update(log_q, 'draw', ...) on {log_q.shape[0]} rows over {log_q.shape[1]} levels, {n_calls} "
                 f"calls: level {i} of row {r} came up with frequency {float(freq[i]):.3f}, but q gives it "
                 f"{float(q[r, i]):.3f} -- does the draw's range depend on the number of rows (the levels are "
                 "log_q.shape[1])?")


@graded(off_limits=("dmcmc_edu.grading.a4_dlg:_library_update",
                    "dmcmc_edu.core.sigma_updates:make_sigma_update"))
def check_sigma_update(student_fn, hidden: bool = False) -> str:
    """``sigma_update(log_q, rule, generator)``: the argmax rule exactly, the draw against the library's draw."""
    seed, C, L = (hidden_seed(11), 9, 30) if hidden else (0, 5, 12)
    log_q = _log_q_case(seed, C, L)
    where = f"for {C} rows of log q over {L} levels"
    a1 = _indices(call_student(student_fn, "sigma_update", log_q.clone(), "argmax", _gen(seed + 1)),
                  "sigma_update(log_q, 'argmax', generator)", C, L)
    a2 = _indices(call_student(student_fn, "sigma_update", log_q.clone(), "argmax", _gen(seed + 2)),
                  "sigma_update(log_q, 'argmax', generator)", C, L)
    want = _library_update(log_q, "argmax", None)
    if not torch.equal(a1, a2):
        fail(f"{where}: the 'argmax' rule gave different indices for two generator seeds ({a1.tolist()} and "
             f"{a2.tolist()}); the paper's argmax is deterministic -- argmax and draw swapped?")
    compare("sigma_update(log_q, 'argmax', generator)", a1, want, where=where, rtol=0, atol=0,
            mistakes={"the smallest q (argmin)": log_q.argmin(dim=1)},
            hint="the argmax rule takes, per row, the level of largest q")
    got = _indices(call_student(student_fn, "sigma_update", log_q.clone(), "draw", _gen(seed + 3)),
                   "sigma_update(log_q, 'draw', generator)", C, L)
    want = _library_update(log_q, "draw", _gen(seed + 3))
    if torch.equal(got, want):
        return ok("sigma_update: the argmax, and draws equal to the library's for the same seed")
    if torch.equal(got, log_q.argmax(dim=1)):
        fail(f"{where}: sigma_update(log_q, 'draw', ...) returned the argmax of every row ({got.tolist()}); "
             "a draw should land on other levels in proportion to q -- argmax and draw swapped?")
    _draw_follows_q(student_fn, log_q[:3], seed)
    _draw_follows_q_per_call(student_fn, log_q, seed)
    return ok("sigma_update: the argmax, and draws that follow q (though not the library's draws for this seed: "
              "draw u = torch.rand(C, generator=generator, dtype=torch.float64) and invert the CDF to reproduce them)")


# ----------------------------------------------------------------------------- one Gibbs step


def reference_gibbs_step(D, x, index, grid, eta, sigma_update, generator):
    """The library's DLG step (ULA x-update, then the sigma-update) in the assignment's signature."""
    new, _ = dlg_step(D, dlg_init(x, index, grid), sigma_update, eta=eta, generator=generator, x_update="ula")
    return new.x, new.index


def _gibbs_case(seed: int, C: int):
    mix = ring()
    grid = noise_level_grid(mix.default_sigma_min(), mix.default_sigma_max(), 40)
    g = _gen(seed)
    index = torch.randperm(40, generator=g)[:C].sort().values  # distinct levels, one per chain
    sigma = grid[index]
    x = mix.sample(C, g) + sigma[:, None] * torch.randn(C, 2, generator=g, dtype=torch.float64)
    return mix, grid, x, index


def _gibbs_mistakes(mix, grid, x, index, eta, update, seed: int) -> tuple[dict, dict]:
    """What the listed mistakes give for x' and for the new index (same generator seed)."""
    C = x.shape[0]
    g = _gen(seed)
    first = update(x, grid, g)  # sigma-update first ...
    x_new_sigma, _ = ula_step(mix, x, grid[first], torch.full((C,), eta, dtype=x.dtype), g)  # ... x at the new sigma
    g = _gen(seed)
    update(x, grid, g)
    x_old_sigma, _ = ula_step(mix, x, grid[index], torch.full((C,), eta, dtype=x.dtype), g)
    one = {}
    for what, s in (("the first chain's sigma", grid[index[0]]), ("the mean sigma", grid[index].mean()),
                    ("sigma_max", grid[0])):
        one[f"one sigma for every chain ({what}): the per-chain sigma grid[index] ignored"] = ula_step(
            mix, x, s.expand(C), torch.full((C,), eta, dtype=x.dtype), _gen(seed))[0]
    x_mistakes = {"the sigma-update before the x-update (then the x-update at the new sigma)": x_new_sigma,
                  "the sigma-update before the x-update (its draw taken before the Langevin noise)": x_old_sigma,
                  **one}
    g = _gen(seed)
    ula_step(mix, x, grid[index], torch.full((C,), eta, dtype=x.dtype), g)
    idx_mistakes = {"the sigma-update at the old x instead of the new x'": update(x, grid, g)}
    return x_mistakes, idx_mistakes


@graded(off_limits=("dmcmc_edu.core.dlg:dlg_step",
                    "dmcmc_edu.grading.a4_dlg:reference_gibbs_step"))
def check_gibbs_step(student_fn, hidden: bool = False) -> str:
    """``gibbs_step``: x' and the new index equal the library's DLG step for the same seed."""
    seed, C, eta = (hidden_seed(23), 10, 0.03) if hidden else (5, 6, 0.05)
    mix, grid, x, index = _gibbs_case(seed, C)
    update = make_sigma_update("exact", model=mix)
    where = f"{C} chains on the ring at sigma {[round(v, 3) for v in grid[index].tolist()[:4]]}..., eta = {eta}"
    got = call_student(student_fn, "gibbs_step", mix, x.clone(), index.clone(), grid, eta, update, _gen(seed + 1))
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"gibbs_step returned a {type(got).__name__}, expected the pair (x_new, index_new)")
    want_x, want_i = reference_gibbs_step(mix, x, index, grid, eta, update, _gen(seed + 1))
    x_mis, i_mis = _gibbs_mistakes(mix, grid, x, index, eta, update, seed + 1)
    compare("x' of gibbs_step", got[0], want_x, where=where, rtol=1e-8, atol=1e-10, mistakes=x_mis,
            hint="first the x-update at each chain's own sigma = grid[index]: x + eta/2 * (D(x, sigma) - x) / sigma^2 "
                 "+ sqrt(eta) * z with z = torch.randn(x.shape, generator=generator, dtype=x.dtype)")
    new_i = _indices(got[1], "the new index of gibbs_step", C, grid.numel())
    compare("the new index of gibbs_step", new_i, want_i, where=where, rtol=0, atol=0, mistakes=i_mis,
            hint="after the x-update, call sigma_update(x_new, grid, generator) once")
    return ok("gibbs_step: x-update at each chain's sigma, then the sigma-update, as the library's dlg_step")


# ----------------------------------------------------------------------------- the smallest-sigma pick


def reference_pick_smallest(xs, indices, x_start, index_start):
    """The library's pick with the authors' rule, in the assignment's signature."""
    return pick_smallest_sigma(xs, indices, start=(x_start, index_start))


def _later_wins_ties(xs, indices, x_start, index_start):
    best_x, best_i = x_start.clone(), index_start.clone()
    for x, i in zip(xs, indices):
        better = i >= best_i
        best_x = torch.where(better[:, None], x, best_x)
        best_i = torch.where(better, i, best_i)
    return best_x, best_i


def _pick_case(seed: int, n_skip: int):
    g = _gen(seed)
    # per chain: start index, then n_skip indices (a larger index is a smaller sigma)
    rows = [[20, 12, 15, 14, 13][: n_skip + 1],  # sigma rose during the block: the start wins (authors' rule)
            [10, 11, 12, 13, 14][: n_skip + 1],  # sigma falls all the time: the last state
            [10, 16, 11, 16, 12][: n_skip + 1],  # a tie inside the block: the earlier state
            [16, 16, 9, 8, 7][: n_skip + 1],  # tie with the start, then rising sigma
            [5, 7, 19, 3, 6][: n_skip + 1]]  # the minimum in the middle
    extra = torch.randint(0, 30, (3, n_skip + 1), generator=g).tolist()
    idx = torch.tensor(rows + extra).T  # [n_skip + 1, C]
    C = idx.shape[1]
    xs = [torch.randn(C, 2, generator=g, dtype=torch.float64) for _ in range(n_skip + 1)]
    return xs[0], idx[0], xs[1:], list(idx[1:])


@graded(off_limits=("dmcmc_edu.core.pick:pick_smallest_sigma",
                    "dmcmc_edu.grading.a4_dlg:reference_pick_smallest"))
def check_pick_smallest(student_fn, hidden: bool = False) -> str:
    """``pick_smallest``: the authors' rule (start included, strictly smaller sigma replaces, earliest wins ties)."""
    seed, n_skip = (hidden_seed(31), 4) if hidden else (3, 3)
    x0, i0, xs, idxs = _pick_case(seed, n_skip)
    where = f"a block of {n_skip} Gibbs steps for {x0.shape[0]} chains"
    got = call_student(student_fn, "pick_smallest", [x.clone() for x in xs], [i.clone() for i in idxs],
                       x0.clone(), i0.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"pick_smallest returned a {type(got).__name__}, expected the pair (x, index)")
    want_x, want_i = reference_pick_smallest(xs, idxs, x0, i0)
    block_x, block_i = pick_smallest_sigma(xs, idxs)
    mistakes_i = {"the last state of the block instead of the smallest sigma": idxs[-1],
                  "the 'block' rule (the state before the block left out; the authors' rule includes it)": block_i,
                  "the largest sigma (the smallest index) instead of the smallest sigma":
                      torch.stack([i0, *idxs]).min(dim=0).values}
    got_i = _indices(got[1], "the index of pick_smallest", x0.shape[0], 10**9)
    compare("the picked index", got_i, want_i, where=where, rtol=0, atol=0, mistakes=mistakes_i,
            hint="a larger index is a smaller sigma; keep a running best, starting from the state before the block")
    tie_x, _ = _later_wins_ties(xs, idxs, x0, i0)
    compare("the picked x", got[0], want_x, where=where, rtol=0, atol=1e-12,
            mistakes={"the last state of the block instead of the smallest sigma": xs[-1],
                      "ties broken towards the later state (a later state replaces only if its sigma is strictly "
                      "smaller)": tie_x, "the 'block' rule (the state before the block left out)": block_x},
            hint="return the x of the picked state, per chain")
    return ok("pick_smallest: the authors' smallest-sigma rule")


# ----------------------------------------------------------------------------- the mini sampler


def _mini(D, x, index, grid, sigma_update, *, eta, n_skip, rounds, steps, sigma_min, generator, variant=""):
    """The assignment's mini DMCMC loop (``variant`` names a listed mistake, "" the correct loop)."""
    outs, sigs = [], []
    for _ in range(rounds):
        x_start, i_start = x, index
        xs, idxs = [], []
        for _ in range(n_skip):
            x, index = reference_gibbs_step(D, x, index, grid, eta, sigma_update, generator)
            xs.append(x)
            idxs.append(index)
        if variant == "block":
            x_start, i_start = xs[0], idxs[0]
        bx, bi = reference_pick_smallest(xs, idxs, x_start, i_start)
        out, _ = kar1(D, bx, grid[bi], sigma_min, steps)
        outs.append(out)
        sigs.append(grid[bi])
        if variant == "continue_picked":
            x, index = bx, bi
        elif variant == "feed_back":
            x = out
    return torch.cat(outs), torch.cat(sigs)


def reference_mini_dmcmc(D, x, index, grid, sigma_update, *, eta, n_skip, rounds, steps, sigma_min, generator,
                         step_fn=None, pick_fn=None):
    """The mini sampler with the library's pieces (``step_fn``/``pick_fn`` are accepted and ignored)."""
    return _mini(D, x, index, grid, sigma_update, eta=eta, n_skip=n_skip, rounds=rounds, steps=steps,
                 sigma_min=sigma_min, generator=generator)


def _library_run(seed: int, C: int, rounds: int, n_skip: int, sigma_update: str):
    """A DMCMCSampler on the ring after its burn-in, the chains' state, its generator state, and its outputs."""
    mix = ring()
    cfg = dlg_config(mix, n_outputs=C * rounds, outputs_per_chain=rounds, n_levels=50, x_update="ula", eta_rel=0.0,
                     eta=0.02, sigma_update=sigma_update, pick="authors", n_skip=n_skip, steps=4, init_steps=5,
                     burn_in=[[3, None]], seed=seed)
    grid = cfg.grid()
    clf = ExactLevelClassifier(mix, grid) if sigma_update.startswith("classifier") else None
    sampler = DMCMCSampler(mix, cfg, data_shape=(2,), classifier=clf)
    sampler.burn_in()
    start = (sampler.state.x.clone(), sampler.state.index.clone(), sampler.generator.get_state())
    res = sampler.run()
    return mix, cfg, sampler, start, res


@graded(off_limits=("dmcmc_edu.core.sampler:DMCMCSampler.run",
                    "dmcmc_edu.grading.a4_dlg:reference_mini_dmcmc",
                    "dmcmc_edu.grading.a4_dlg:_mini"))
def check_mini_dmcmc(student_fn, hidden: bool = False) -> str:
    """``mini_dmcmc`` with the library's Gibbs step and pick: the same seed gives the library sampler's outputs."""
    seed, C, rounds, n_skip, upd = ((hidden_seed(17) % 2**31, 12, 3, 3, "classifier-argmax") if hidden
                                    else (2, 8, 3, 2, "exact"))
    mix, cfg, sampler, (x0, i0, gstate), res = _library_run(seed, C, rounds, n_skip, upd)
    kw = dict(eta=cfg.eta, n_skip=n_skip, rounds=rounds, steps=cfg.steps, sigma_min=cfg.sigma_min)
    where = (f"{C} chains on the ring after the library's burn-in, {rounds} rounds of n_skip = {n_skip}, "
             f"{upd} sigma-update")

    def gen():
        return torch.Generator().set_state(gstate)

    got = call_student(student_fn, "mini_dmcmc", mix, x0.clone(), i0.clone(), sampler.grid, sampler.sigma_update,
                       generator=gen(), step_fn=reference_gibbs_step, pick_fn=reference_pick_smallest, **kw)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"mini_dmcmc returned a {type(got).__name__}, expected the pair (samples, chosen_sigma)")
    mistakes = {}
    for variant, text in (("continue_picked", "the chains continued from the picked state instead of their last "
                                              "Gibbs state"),
                          ("feed_back", "the denoised outputs fed back as the chains' states"),
                          ("block", "the pick started from the block's first new state, not the state before "
                                    "the block")):
        mistakes[text] = _mini(mix, x0, i0, sampler.grid, sampler.sigma_update, generator=gen(), variant=variant,
                               **kw)
    compare("the chosen sigma of mini_dmcmc", got[1], res.chosen_sigma, where=where, rtol=1e-10, atol=0,
            mistakes={k: v[1] for k, v in mistakes.items()},
            hint="per round: n_skip steps of step_fn (keep each state), pick_fn(states, indices, state before the "
                 "block), and return grid[picked index]; the chains go on from their last Gibbs state")
    compare("the samples of mini_dmcmc", got[0], res.samples, where=where, rtol=1e-8, atol=1e-10,
            mistakes={k: v[0] for k, v in mistakes.items()},
            hint="denoise the picked states with kar1(D, x, grid[index], sigma_min, steps), each from its own sigma; "
                 "return the rounds one after the other (round r, chain c at row r * C + c)")
    n = as_array(got[0], "samples").shape[0]
    return ok(f"mini_dmcmc: the library sampler's {n} outputs, bit for bit from the same seed")
