"""Common wrong answers of A5 (the noise-level classifier); tests/test_assignments.py proves each loses points.

Each entry replaces the solution cell ``cell`` of the source notebook by ``source``; the graded cell ``test`` must
then score below its points and its error output contain ``message``.
"""

PAIRS_DOC = '''def training_pairs(x0, grid, generator):
    """Noisy inputs and their level labels for the noise-level classifier."""
'''
LOSS_DOC = '''def cross_entropy_loss(logits, y):
    """Mean cross-entropy -log q(y | x) of a batch."""
'''
KL_DOC = '''def kl_exact_to_classifier(log_p, logits):
    """Mean over points of KL(p_exact(. | x) || q(. | x)), in nats."""
'''
SPREAD_DOC = '''def log_sigma_spread(log_p, grid):
    """Per point, the standard deviation of log sigma under p(sigma_i | x)."""
'''

MISTAKES = [
    dict(cell="training_pairs", test="test_training_pairs", message="off by one",
         source=PAIRS_DOC + """    y = torch.randint(1, grid.numel() + 1, (x0.shape[0],), generator=generator)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return x0 + grid[y - 1].to(x0.dtype)[:, None] * z, y
"""),
    dict(cell="training_pairs", test="test_training_pairs", message="not uniform over the grid's indices",
         source=PAIRS_DOC + """    lo, hi = float(grid[-1]), float(grid[0])
    sigma = lo + (hi - lo) * torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype)
    y = (torch.log(grid)[None, :] - torch.log(sigma)[:, None]).abs().argmin(dim=1)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return x0 + sigma[:, None] * z, y
"""),
    dict(cell="cross_entropy_loss", test="test_cross_entropy_loss", message="logits used as log-probabilities",
         source=LOSS_DOC + "    return -logits.gather(1, y[:, None]).mean()\n"),
    dict(cell="kl_exact_to_classifier", test="test_kl_exact_to_classifier", message="KL direction swapped",
         source=KL_DOC + """    log_q = torch.log_softmax(logits, dim=1)
    return float((log_q.exp() * (log_q - log_p)).sum(dim=1).mean())
"""),
    dict(cell="kl_exact_to_classifier", test="test_kl_exact_to_classifier",
         message="logits used as log-probabilities (no log-softmax)",
         source=KL_DOC + "    return float((log_p.exp() * (log_p - logits)).sum(dim=1).mean())\n"),
    dict(cell="log_sigma_spread", test="test_log_sigma_spread",
         message="the standard deviation of sigma instead of log sigma",
         source=SPREAD_DOC + """    p = log_p.exp()
    m = (p * grid).sum(dim=1)
    return (p * (grid - m[:, None]) ** 2).sum(dim=1).sqrt()
"""),
    dict(cell="why_argmax_collapses", test="test_why_argmax_collapses", message="is not the reason",
         source='''def why_argmax_collapses():
    """The letter of the reason the argmax sigma-update collapses in 2D."""
    return "a"
'''),
]

# added for issue 20: the library's own answer called from the solution
MISTAKES += [
    dict(cell="training_pairs", test="test_training_pairs",
         message="implement this yourself (it is what this exercise is for)",
         source=PAIRS_DOC + """    from dmcmc_edu.models.classifier import noisy_batch
    x, y = noisy_batch(x0, grid, generator)
    return x, y
"""),
]
