"""Common wrong answers of A6 (a small research question); tests/test_assignments.py proves each loses points.

Each entry replaces the solution cell ``cell`` of the source notebook by ``source``; the graded cell ``test`` must
then score below its points and its error output contain ``message``.
"""

FULL_DOC = '''def full_nfe_per_output(ledger):
    """NFE per output by the full ledger: every counted row of the run, divided by the number of outputs."""
'''
ESS_DOC = '''def effective_sample_size(rho, n_total):
    """Geyer's ESS from the pooled autocorrelation."""
'''
PER_IND_DOC = '''def nfe_per_independent_sample(nfe_per_output, n_outputs, ess):
    """Evaluations per independent sample: the run's total cost divided by its effective sample size."""
'''
REACH_DOC = '''def nfe_to_reach(nfe, metric, target):
    """The smallest NFE among the points whose metric is <= target; math.inf when none reaches it."""
'''

MISTAKES = [
    dict(cell="full_nfe_per_output", test="test_full_nfe_per_output", message="the paper's count",
         source=FULL_DOC + "    return (ledger.gibbs + ledger.denoise + ledger.tweedie) / ledger.n_outputs\n"),
    dict(cell="full_nfe_per_output", test="test_full_nfe_per_output", message="not amortised",
         source=FULL_DOC + """    paid = ledger.gibbs + ledger.denoise + ledger.tweedie + ledger.classifier
    per_output = paid / ledger.n_outputs
    return per_output + (ledger.init + ledger.classifier_init) / ledger.n_chains
"""),
    dict(cell="effective_sample_size", test="test_effective_sample_size", message="rho_0 counted twice",
         source=ESS_DOC + """    s = 0.0
    for m in range(0, len(rho) - 1, 2):
        if rho[m] + rho[m + 1] <= 0:
            break
        s += rho[m] + rho[m + 1]
    return float(min(n_total, n_total / (1 + 2 * s)))
"""),
    dict(cell="nfe_per_independent_sample", test="test_nfe_per_independent_sample",
         message="NFE per output instead of per independent sample (the ESS ignored)",
         source=PER_IND_DOC + "    return nfe_per_output\n"),
    dict(cell="nfe_to_reach", test="test_nfe_to_reach", message="the first point in the list that reaches the target",
         source=REACH_DOC + """    for c, m in zip(nfe, metric):
        if m <= target:
            return c
    return math.inf
"""),
]

# added for issue 20: a strict comparison at the target (a visible case has a point exactly at it), and the
# library's own answer called from the solution
MISTAKES += [
    dict(cell="nfe_to_reach", test="test_nfe_to_reach", message="metric < target instead of metric <= target",
         source=REACH_DOC + """    reached = [c for c, m in zip(nfe, metric) if m < target]
    return min(reached) if reached else math.inf
"""),
    dict(cell="effective_sample_size", test="test_effective_sample_size",
         message="implement this yourself (it is what this exercise is for)",
         source=ESS_DOC + """    from dmcmc_edu.evaluation import diagnostics
    return diagnostics._ess_from_rho(rho, n_total)
"""),
    dict(cell="full_nfe_per_output", test="test_full_nfe_per_output",
         message="implement this yourself (it is what this exercise is for)",
         source=FULL_DOC + "    return ledger.per_output()['full']\n"),
]
MISTAKES += [
    dict(cell="effective_sample_size", test="test_effective_sample_size",
         message="the sum stopped only at a negative pair (pair < 0 instead of pair <= 0",
         source=ESS_DOC + """    s = 0.0
    for m in range(0, len(rho) - 1, 2):
        pair = rho[m] + rho[m + 1]
        if pair < 0:
            break
        s += pair
    tau = 2 * s - 1
    return float(min(n_total, n_total / tau)) if tau > 0 else float(n_total)
"""),
]
