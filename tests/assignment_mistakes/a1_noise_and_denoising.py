"""Common wrong answers of A1 (noise and denoising); tests/test_assignments.py proves each loses points.

Each entry replaces the solution cell ``cell`` of the source notebook by ``source``; the graded cell ``test`` must
then score below its points and its error output contain ``message``.
"""

FORWARD_DOC = '''def forward_noise(x, sigma, eps):
    """Noise each sample at its own level: x_sigma = x + sigma * eps."""
'''
KARRAS_DOC = '''def karras_schedule(sigma_start, sigma_min, steps, rho=7.0):
    """Karras et al.'s schedule, one row per sample."""
'''
GEOMETRIC_DOC = '''def geometric_schedule(sigma_start, sigma_min, steps):
    """The geometric schedule, one row per sample."""
'''
TWEEDIE_DOC = '''def tweedie_denoiser(mixture, x, sigma):
    """Tweedie's formula D(x, sigma) = x + sigma^2 * score(x, sigma), with the mixture's exact score."""
'''
SCORE_DOC = '''def score_from_denoiser(denoiser, x, sigma):
    """The score of the noised density read off a denoiser: (D(x, sigma) - x) / sigma^2."""
'''

MISTAKES = [
    dict(cell="forward_noise", test="test_forward_noise",
         source=FORWARD_DOC + "    return x + sigma[:, None] ** 2 * eps\n",
         message="sigma**2 * eps instead of sigma * eps"),
    dict(cell="karras_schedule", test="test_karras_schedule",
         source=KARRAS_DOC + """    ramp = torch.linspace(0, 1, steps, dtype=sigma_start.dtype)
    hi = sigma_start[:, None] ** (1.0 / rho)
    lo = sigma_min ** (1.0 / rho)
    return (lo + ramp[None, :] * (hi - lo)) ** rho
""", message="the schedule reversed"),
    dict(cell="karras_schedule", test="test_karras_schedule",
         source=KARRAS_DOC + """    ramp = torch.linspace(0, 1, steps, dtype=sigma_start.dtype)
    hi = sigma_start[:, None] ** rho
    lo = sigma_min ** rho
    return (hi + ramp[None, :] * (lo - hi)) ** (1.0 / rho)
""", message="spacing evenly in sigma**rho instead of sigma**(1/rho)"),
    dict(cell="geometric_schedule", test="test_geometric_schedule",
         source=GEOMETRIC_DOC + """    t = torch.linspace(0, 1, steps + 1, dtype=sigma_start.dtype)
    return sigma_start[:, None] + t[None, :] * (sigma_min - sigma_start[:, None])
""", message="spacing evenly in sigma instead of in log sigma"),
    dict(cell="geometric_schedule", test="test_geometric_schedule",
         source=GEOMETRIC_DOC + """    t = torch.linspace(0, 1, steps, dtype=sigma_start.dtype)
    return sigma_start[:, None] * (sigma_min / sigma_start[:, None]) ** t[None, :]
""", message="steps levels instead of steps + 1"),
    dict(cell="tweedie_denoiser", test="test_tweedie_denoiser",
         source=TWEEDIE_DOC + "    return x + sigma[:, None] * mixture.score(x, sigma)\n",
         message="sigma * score instead of sigma**2 * score"),
    dict(cell="tweedie_denoiser", test="test_tweedie_denoiser",
         source=TWEEDIE_DOC + "    return x - sigma[:, None] ** 2 * mixture.score(x, sigma)\n",
         message="the sign of the correction flipped"),
    dict(cell="score_from_denoiser", test="test_score_from_denoiser",
         source=SCORE_DOC + "    return (x - denoiser(x, sigma)) / sigma[:, None] ** 2\n",
         message="the score with the wrong sign"),
    dict(cell="score_from_denoiser", test="test_score_from_denoiser",
         source=SCORE_DOC + "    return (denoiser(x, sigma) - x) / sigma[:, None]\n",
         message="dividing by sigma instead of sigma**2"),
]

# added for issue 20: off-by-one levels in each schedule, a trailing zero, the library's own answer
KARRAS_BODY = """    ramp = torch.linspace(0, 1, {n}, dtype=sigma_start.dtype)
    hi = sigma_start[:, None] ** (1.0 / rho)
    lo = sigma_min ** (1.0 / rho)
    levels = (hi + ramp[None, :] * (lo - hi)) ** rho
"""
MISTAKES += [
    dict(cell="karras_schedule", test="test_karras_schedule",
         source=KARRAS_DOC + KARRAS_BODY.format(n="steps + 1") + "    return levels\n",
         message="steps + 1 levels (linspace(0, 1, steps + 1)) instead of steps"),
    dict(cell="karras_schedule", test="test_karras_schedule",
         source=KARRAS_DOC + KARRAS_BODY.format(n="steps")
         + "    return torch.cat([levels, torch.zeros_like(levels[:, :1])], dim=1)\n",
         message="a trailing 0 appended"),
    dict(cell="karras_schedule", test="test_karras_schedule",
         source=KARRAS_DOC + "    from dmcmc_edu.core.schedules import karras_sigmas\n"
         + "    return karras_sigmas(sigma_start, sigma_min, steps, rho, append_zero=False)\n",
         message="implement this yourself (it is what this exercise is for)"),
    dict(cell="geometric_schedule", test="test_geometric_schedule",
         source=GEOMETRIC_DOC + """    t = torch.linspace(0, 1, steps + 2, dtype=sigma_start.dtype)
    return sigma_start[:, None] * (sigma_min / sigma_start[:, None]) ** t[None, :]
""", message="steps + 2 levels (linspace(0, 1, steps + 2)) instead of steps + 1"),
    dict(cell="tweedie_denoiser", test="test_tweedie_denoiser",
         source=TWEEDIE_DOC + "    return mixture(x, sigma)\n",
         message="implement this yourself (it is what this exercise is for)"),
]
