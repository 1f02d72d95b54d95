"""Common wrong answers of A4 (Denoising Langevin Gibbs); tests/test_assignments.py proves each loses points.

Each entry replaces the solution cell ``cell`` of the source notebook by ``source``; the graded cell ``test`` must
then score below its points and its error output contain ``message``.
"""

SIGMA_DOC = '''def sigma_update(log_q, rule, generator):
    """The sigma-update from a classifier: argmax or a draw from q."""
'''
GIBBS_DOC = '''def gibbs_step(D, x, index, grid, eta, sigma_update, generator):
    """One DLG Gibbs step: the Langevin x-update at each chain's sigma, then the sigma-update at the new x."""
'''
PICK_DOC = '''def pick_smallest(xs, indices, x_start, index_start):
    """Per chain, the state of smallest sigma among the state before the block and the block's states."""
'''
MINI_DOC = '''def mini_dmcmc(D, x, index, grid, sigma_update, *, eta, n_skip, rounds, steps, sigma_min, generator,
               step_fn, pick_fn):
    """Persistent DLG chains that each give one denoised output per round."""
'''
DRAW = """    q = torch.softmax(log_q.to(torch.float64), dim=1)
    cdf = q.cumsum(dim=1)
    u = torch.rand(log_q.shape[0], generator=generator, dtype=torch.float64)
    return torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1).clamp(max=log_q.shape[1] - 1)
"""
ULA = """    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    x_new = x + eta / 2 * (D(x, sigma) - x) / sigma[:, None] ** 2 + eta ** 0.5 * z
"""
PICK_LOOP = """    for x, i in zip(xs, indices):
        better = i > best_i
        best_x = torch.where(better[:, None], x, best_x)
        best_i = torch.where(better, i, best_i)
    return best_x, best_i
"""

MISTAKES = [
    dict(cell="sigma_update", test="test_sigma_update", message="argmax and draw swapped",
         source=SIGMA_DOC + "    if rule == 'draw':\n        return log_q.argmax(dim=1)\n" + DRAW),
    dict(cell="gibbs_step", test="test_gibbs_step", message="the sigma-update before the x-update",
         source=GIBBS_DOC + "    index = sigma_update(x, grid, generator)\n    sigma = grid[index].to(x.dtype)\n"
         + ULA + "    return x_new, index\n"),
    dict(cell="gibbs_step", test="test_gibbs_step", message="one sigma for every chain",
         source=GIBBS_DOC + "    sigma = grid[index[0]].to(x.dtype).expand(x.shape[0])\n" + ULA
         + "    return x_new, sigma_update(x_new, grid, generator)\n"),
    dict(cell="pick_smallest", test="test_pick_smallest",
         message="the last state of the block instead of the smallest sigma",
         source=PICK_DOC + "    return xs[-1], indices[-1]\n"),
    dict(cell="pick_smallest", test="test_pick_smallest", message="the 'block' rule",
         source=PICK_DOC + "    best_x, best_i = xs[0].clone(), indices[0].clone()\n" + PICK_LOOP),
    dict(cell="pick_smallest", test="test_pick_smallest", message="ties broken towards the later state",
         source=PICK_DOC + "    best_x, best_i = x_start.clone(), index_start.clone()\n"
         + PICK_LOOP.replace("i > best_i", "i >= best_i")),
    dict(cell="mini_dmcmc", test="test_mini_dmcmc",
         message="the chains continued from the picked state instead of their last Gibbs state",
         source=MINI_DOC + """    samples, chosen = [], []
    for _ in range(rounds):
        x_before, index_before = x, index
        xs, indices = [], []
        for _ in range(n_skip):
            x, index = step_fn(D, x, index, grid, eta, sigma_update, generator)
            xs.append(x)
            indices.append(index)
        x, index = pick_fn(xs, indices, x_before, index_before)
        out, _ = kar1(D, x, grid[index], sigma_min, steps)
        samples.append(out)
        chosen.append(grid[index])
    return torch.cat(samples), torch.cat(chosen)
"""),
]

# added for issue 20: the library's own answer called from the solution
MISTAKES += [
    dict(cell="pick_smallest", test="test_pick_smallest",
         message="implement this yourself (it is what this exercise is for)",
         source=PICK_DOC + """    from dmcmc_edu.core.pick import pick_smallest_sigma
    return pick_smallest_sigma(xs, indices, start=(x_start, index_start))
"""),
]
