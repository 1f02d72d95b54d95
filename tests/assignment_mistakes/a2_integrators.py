"""Common wrong answers of assignment A2 (integrators); each must lose points with its message.

Each entry replaces the solution cell `cell` by a wrong answer; the graded cell `test` must then lose its points
and show `message`."""

MISTAKES = [
    dict(cell='exact_flow', test='test_exact_flow', message='the variance ratio without its square root',
         source="""def exact_flow(x, sigma_start, sigma_end, mean, tau):
    '''The probability-flow ODE of a Gaussian N(mean, tau I), solved exactly.

    For p_0 = N(mean, tau I) the noised density is p_sigma = N(mean, (tau + sigma^2) I), and the flow
    dx/dsigma = (x - D(x, sigma)) / sigma keeps (x - mean) / sqrt(tau + sigma^2) constant.

    x:           [B, d] points at their levels sigma_start
    sigma_start: [B]    where each point starts
    sigma_end:   [B]    where each point should end (may be 0)
    mean:        [d]    the Gaussian's mean
    tau:         float  the Gaussian's variance (per coordinate)
    Returns x(sigma_end), shape [B, d].
    '''
    ratio = (tau + sigma_end**2) / (tau + sigma_start**2)
    return mean + ratio[:, None] * (x - mean)"""),
    dict(cell='pf_euler', test='test_pf_euler', message='NFE off by one',
         source="""def pf_euler(D, x, sigma_start, sigma_min, steps):
    '''Probability-flow Euler (Song et al. 2021): Euler steps in t = log sigma on geometric levels.

    With the levels s_0 = sigma_start > s_1 > ... > s_N = sigma_min of geometric_sigmas (one row per sample),
    each step reads  x <- x + h_i (D(x, s_i) - x)  with  h_i = log(s_i / s_(i+1)).

    D:           a denoiser D(x, sigma), sigma of shape [B]
    x:           [B, d] starting points, sample b at level sigma_start[b]
    sigma_start: [B]    one starting level per sample
    sigma_min:   float  where every sample ends
    steps:       int    N, the number of steps
    Returns (x at sigma_min [B, d], nfe): nfe is the number of evaluations of D per sample, counted by
    wrapping D in CountingDenoiser(D, n_samples=B).
    '''
    D = CountingDenoiser(D, n_samples=x.shape[0])
    s = geometric_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps):
        h = torch.log(s[:, i] / s[:, i + 1])
        x = x + h[:, None] * (D(x, s[:, i]) - x)
    return x, D.nfe + 1   # counts the Tweedie step, which pf_euler does not take"""),
    dict(cell='pf_euler', test='test_pf_euler', message='a single sigma_start shared by all samples',
         source="""def pf_euler(D, x, sigma_start, sigma_min, steps):
    '''Probability-flow Euler (Song et al. 2021): Euler steps in t = log sigma on geometric levels.

    With the levels s_0 = sigma_start > s_1 > ... > s_N = sigma_min of geometric_sigmas (one row per sample),
    each step reads  x <- x + h_i (D(x, s_i) - x)  with  h_i = log(s_i / s_(i+1)).

    D:           a denoiser D(x, sigma), sigma of shape [B]
    x:           [B, d] starting points, sample b at level sigma_start[b]
    sigma_start: [B]    one starting level per sample
    sigma_min:   float  where every sample ends
    steps:       int    N, the number of steps
    Returns (x at sigma_min [B, d], nfe): nfe is the number of evaluations of D per sample, counted by
    wrapping D in CountingDenoiser(D, n_samples=B).
    '''
    D = CountingDenoiser(D, n_samples=x.shape[0])
    s = geometric_sigmas(sigma_start.max(), sigma_min, steps).expand(x.shape[0], -1)   # one schedule for all
    for i in range(steps):
        h = torch.log(s[:, i] / s[:, i + 1])
        x = x + h[:, None] * (D(x, s[:, i]) - x)
    return x, D.nfe"""),
    dict(cell='pf_euler', test='test_pf_euler', message='an Euler step in sigma',
         source="""def pf_euler(D, x, sigma_start, sigma_min, steps):
    '''Probability-flow Euler (Song et al. 2021): Euler steps in t = log sigma on geometric levels.

    With the levels s_0 = sigma_start > s_1 > ... > s_N = sigma_min of geometric_sigmas (one row per sample),
    each step reads  x <- x + h_i (D(x, s_i) - x)  with  h_i = log(s_i / s_(i+1)).

    D:           a denoiser D(x, sigma), sigma of shape [B]
    x:           [B, d] starting points, sample b at level sigma_start[b]
    sigma_start: [B]    one starting level per sample
    sigma_min:   float  where every sample ends
    steps:       int    N, the number of steps
    Returns (x at sigma_min [B, d], nfe): nfe is the number of evaluations of D per sample, counted by
    wrapping D in CountingDenoiser(D, n_samples=B).
    '''
    D = CountingDenoiser(D, n_samples=x.shape[0])
    s = geometric_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps):
        x = x + ((s[:, i + 1] - s[:, i]) / s[:, i])[:, None] * (x - D(x, s[:, i]))   # a step in sigma
    return x, D.nfe"""),
    dict(cell='kar1', test='test_kar1', message="Euler steps instead of Heun's",
         source="""def kar1(D, x, sigma_start, sigma_min, steps):
    '''KAR1: Heun's method on the probability-flow ODE (Karras et al. 2022, Alg. 1), from a per-sample start.

    Levels t_0 = sigma_start > ... > t_(N-1) = sigma_min > t_N = 0 from karras_sigmas (one row per sample).
    With the slope d(x, t) = (x - D(x, t)) / t, step i goes from t_i to t_(i+1):
        Euler:  x_E = x + (t_(i+1) - t_i) d(x, t_i)
        Heun:   x  <- x + (t_(i+1) - t_i) (d(x, t_i) + d(x_E, t_(i+1))) / 2      (every step but the last)
    The last step, to t_N = 0, is the Euler step alone.

    D:           a denoiser D(x, sigma), sigma of shape [B]
    x:           [B, d] starting points, sample b at level sigma_start[b]
    sigma_start: [B]    one starting level per sample
    sigma_min:   float  the last level above 0
    steps:       int    N, the number of steps
    Returns (x at sigma = 0 [B, d], nfe), nfe counted with CountingDenoiser(D, n_samples=B).
    '''
    D = CountingDenoiser(D, n_samples=x.shape[0])
    t = karras_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps):
        t_cur, t_next = t[:, i], t[:, i + 1]
        x = x + (t_next - t_cur)[:, None] * (x - D(x, t_cur)) / t_cur[:, None]   # Euler only
    return x, D.nfe"""),
    dict(cell='kar1', test='test_kar1', message="Heun's correction on the last step",
         source="""def kar1(D, x, sigma_start, sigma_min, steps):
    '''KAR1: Heun's method on the probability-flow ODE (Karras et al. 2022, Alg. 1), from a per-sample start.

    Levels t_0 = sigma_start > ... > t_(N-1) = sigma_min > t_N = 0 from karras_sigmas (one row per sample).
    With the slope d(x, t) = (x - D(x, t)) / t, step i goes from t_i to t_(i+1):
        Euler:  x_E = x + (t_(i+1) - t_i) d(x, t_i)
        Heun:   x  <- x + (t_(i+1) - t_i) (d(x, t_i) + d(x_E, t_(i+1))) / 2      (every step but the last)
    The last step, to t_N = 0, is the Euler step alone.

    D:           a denoiser D(x, sigma), sigma of shape [B]
    x:           [B, d] starting points, sample b at level sigma_start[b]
    sigma_start: [B]    one starting level per sample
    sigma_min:   float  the last level above 0
    steps:       int    N, the number of steps
    Returns (x at sigma = 0 [B, d], nfe), nfe counted with CountingDenoiser(D, n_samples=B).
    '''
    D = CountingDenoiser(D, n_samples=x.shape[0])
    t = karras_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps):
        t_cur, t_next = t[:, i], t[:, i + 1]
        d_cur = (x - D(x, t_cur)) / t_cur[:, None]
        x_next = x + (t_next - t_cur)[:, None] * d_cur
        d_next = (x_next - D(x_next, t_next)) / t_next[:, None]   # also on the last step, at t = 0
        x = x + (t_next - t_cur)[:, None] * (d_cur + d_next) / 2
    return x, D.nfe"""),
    dict(cell='kar1', test='test_kar1', message='NFE off by one',
         source="""def kar1(D, x, sigma_start, sigma_min, steps):
    '''KAR1: Heun's method on the probability-flow ODE (Karras et al. 2022, Alg. 1), from a per-sample start.

    Levels t_0 = sigma_start > ... > t_(N-1) = sigma_min > t_N = 0 from karras_sigmas (one row per sample).
    With the slope d(x, t) = (x - D(x, t)) / t, step i goes from t_i to t_(i+1):
        Euler:  x_E = x + (t_(i+1) - t_i) d(x, t_i)
        Heun:   x  <- x + (t_(i+1) - t_i) (d(x, t_i) + d(x_E, t_(i+1))) / 2      (every step but the last)
    The last step, to t_N = 0, is the Euler step alone.

    D:           a denoiser D(x, sigma), sigma of shape [B]
    x:           [B, d] starting points, sample b at level sigma_start[b]
    sigma_start: [B]    one starting level per sample
    sigma_min:   float  the last level above 0
    steps:       int    N, the number of steps
    Returns (x at sigma = 0 [B, d], nfe), nfe counted with CountingDenoiser(D, n_samples=B).
    '''
    D = CountingDenoiser(D, n_samples=x.shape[0])
    t = karras_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps):
        t_cur, t_next = t[:, i], t[:, i + 1]
        d_cur = (x - D(x, t_cur)) / t_cur[:, None]
        x_next = x + (t_next - t_cur)[:, None] * d_cur
        if i < steps - 1:
            d_next = (x_next - D(x_next, t_next)) / t_next[:, None]
            x_next = x + (t_next - t_cur)[:, None] * (d_cur + d_next) / 2
        x = x_next
    return x, 2 * steps   # two evaluations per step, by formula"""),
    dict(cell='kar1', test='test_kar1', message='a single sigma_start shared by all samples',
         source="""def kar1(D, x, sigma_start, sigma_min, steps):
    '''KAR1: Heun's method on the probability-flow ODE (Karras et al. 2022, Alg. 1), from a per-sample start.

    Levels t_0 = sigma_start > ... > t_(N-1) = sigma_min > t_N = 0 from karras_sigmas (one row per sample).
    With the slope d(x, t) = (x - D(x, t)) / t, step i goes from t_i to t_(i+1):
        Euler:  x_E = x + (t_(i+1) - t_i) d(x, t_i)
        Heun:   x  <- x + (t_(i+1) - t_i) (d(x, t_i) + d(x_E, t_(i+1))) / 2      (every step but the last)
    The last step, to t_N = 0, is the Euler step alone.

    D:           a denoiser D(x, sigma), sigma of shape [B]
    x:           [B, d] starting points, sample b at level sigma_start[b]
    sigma_start: [B]    one starting level per sample
    sigma_min:   float  the last level above 0
    steps:       int    N, the number of steps
    Returns (x at sigma = 0 [B, d], nfe), nfe counted with CountingDenoiser(D, n_samples=B).
    '''
    D = CountingDenoiser(D, n_samples=x.shape[0])
    t = karras_sigmas(torch.full_like(sigma_start, float(sigma_start[0])), sigma_min, steps)   # one start for all
    for i in range(steps):
        t_cur, t_next = t[:, i], t[:, i + 1]
        d_cur = (x - D(x, t_cur)) / t_cur[:, None]
        x_next = x + (t_next - t_cur)[:, None] * d_cur
        if i < steps - 1:
            d_next = (x_next - D(x_next, t_next)) / t_next[:, None]
            x_next = x + (t_next - t_cur)[:, None] * (d_cur + d_next) / 2
        x = x_next
    return x, D.nfe"""),
    dict(cell='convergence_order', test='test_convergence_order', message='the wrong sign',
         source="""def convergence_order(steps, errors):
    '''The order p of a method whose error behaves like C N^(-p), fitted by least squares.

    log(error) = log(C) - p log(N) is a straight line in (log N, log error): fit it through all points
    (np.polyfit or torch.linalg.lstsq) and return p = minus its slope.

    steps:  [M] step counts N (a 1-D tensor)
    errors: [M] the error at each step count
    Returns p, a float (about 1 for a first-order method, 2 for a second-order one).
    '''
    slope, intercept = np.polyfit(np.log(np.asarray(steps, dtype=float)), np.log(np.asarray(errors, dtype=float)), 1)
    return float(slope)   # the slope itself"""),
    dict(cell='convergence_order', test='test_convergence_order', message='mixing log bases',
         source="""def convergence_order(steps, errors):
    '''The order p of a method whose error behaves like C N^(-p), fitted by least squares.

    log(error) = log(C) - p log(N) is a straight line in (log N, log error): fit it through all points
    (np.polyfit or torch.linalg.lstsq) and return p = minus its slope.

    steps:  [M] step counts N (a 1-D tensor)
    errors: [M] the error at each step count
    Returns p, a float (about 1 for a first-order method, 2 for a second-order one).
    '''
    slope, intercept = np.polyfit(np.log(np.asarray(steps, dtype=float)), np.log10(np.asarray(errors, dtype=float)), 1)
    return float(-slope)   # log10 on one axis, natural log on the other"""),
]

# ----------------------------------------------------------------------------- mistakes added for issue 20
# (evaluation level, a missing last step, an off-by-one schedule, NFE by formula, the library's own answer)

PF_HEAD = """def pf_euler(D, x, sigma_start, sigma_min, steps):
    '''Probability-flow Euler on geometric levels; returns (x at sigma_min, nfe counted by CountingDenoiser).'''
"""
KAR1_HEAD = """def kar1(D, x, sigma_start, sigma_min, steps):
    '''KAR1: Heun on Karras levels, the last step an Euler step to 0; returns (x at 0, counted nfe).'''
"""
KAR1_LOOP = """    for i in range({n}):
        t_cur, t_next = t[:, i], t[:, i + 1]
        d_cur = (x - D(x, t_cur)) / t_cur[:, None]
        x_next = x + (t_next - t_cur)[:, None] * d_cur
        if {heun}:
            d_next = (x_next - D(x_next, t_next)) / t_next[:, None]
            x_next = x + (t_next - t_cur)[:, None] * (d_cur + d_next) / 2
        x = x_next
"""
COUNTED = "    D = CountingDenoiser(D, n_samples=x.shape[0])\n"

MISTAKES += [
    dict(cell='pf_euler', test='test_pf_euler',
         message="D evaluated at the level each step ends on, s_(i+1), instead of the one it starts from",
         source=PF_HEAD + COUNTED + """    s = geometric_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps):
        x = x + torch.log(s[:, i] / s[:, i + 1])[:, None] * (D(x, s[:, i + 1]) - x)   # the next level
    return x, D.nfe
"""),
    dict(cell='pf_euler', test='test_pf_euler', message="the last step left out",
         source=PF_HEAD + COUNTED + """    s = geometric_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps - 1):   # one step short
        x = x + torch.log(s[:, i] / s[:, i + 1])[:, None] * (D(x, s[:, i]) - x)
    return x, D.nfe
"""),
    dict(cell='pf_euler', test='test_pf_euler', message="geometric_sigmas(sigma_start, sigma_min, steps + 1)",
         source=PF_HEAD + COUNTED + """    s = geometric_sigmas(sigma_start, sigma_min, steps + 1)   # one too many
    for i in range(steps):
        x = x + torch.log(s[:, i] / s[:, i + 1])[:, None] * (D(x, s[:, i]) - x)
    return x, D.nfe
"""),
    dict(cell='pf_euler', test='test_pf_euler', message="NFE must be counted by the wrapper",
         source=PF_HEAD + """    s = geometric_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps):
        x = x + torch.log(s[:, i] / s[:, i + 1])[:, None] * (D(x, s[:, i]) - x)
    return x, steps                                                                     # NFE by formula
"""),
    dict(cell='pf_euler', test='test_pf_euler', message="implement this yourself (it is what this exercise is for)",
         source=PF_HEAD + """    from dmcmc_edu.core.integrators import pf_euler as library_pf_euler
    out, info = library_pf_euler(D, x, sigma_start, sigma_min, steps)
    return out, info.nfe
"""),
    dict(cell='kar1', test='test_kar1', message="the final step (the Euler step from sigma_min to 0) never taken",
         source=KAR1_HEAD + COUNTED + "    t = karras_sigmas(sigma_start, sigma_min, steps)\n"
         + KAR1_LOOP.format(n="steps - 1", heun="True") + "    return x, D.nfe\n"),
    dict(cell='kar1', test='test_kar1', message="karras_sigmas(sigma_start, sigma_min, steps + 1)",
         source=KAR1_HEAD + COUNTED + "    t = karras_sigmas(sigma_start, sigma_min, steps + 1)\n"
         + KAR1_LOOP.format(n="steps", heun="i < steps - 1") + "    return x, D.nfe\n"),
    dict(cell='kar1', test='test_kar1',
         message="D evaluated at the level each step ends on, s_(i+1), instead of the one it starts from",
         source=KAR1_HEAD + COUNTED + """    t = karras_sigmas(sigma_start, sigma_min, steps)
    for i in range(steps):
        t_cur, t_next = t[:, i], t[:, i + 1]
        x = x + (t_next - t_cur)[:, None] * (x - D(x, t_next)) / t_cur[:, None]   # D at the next level
    return x, D.nfe
"""),
    dict(cell='kar1', test='test_kar1', message="NFE must be counted by the wrapper",
         source=KAR1_HEAD + "    t = karras_sigmas(sigma_start, sigma_min, steps)\n"
         + KAR1_LOOP.format(n="steps", heun="i < steps - 1") + "    return x, 2 * steps - 1   # NFE by formula\n"),
    dict(cell='kar1', test='test_kar1', message="implement this yourself (it is what this exercise is for)",
         source=KAR1_HEAD + """    from dmcmc_edu import kar1 as library_kar1
    out, info = library_kar1(D, x, sigma_start, sigma_min, steps)
    return out, info.nfe
"""),
    dict(cell='exact_flow', test='test_exact_flow', message="implement this yourself (it is what this exercise is for)",
         source="""def exact_flow(x, sigma_start, sigma_end, mean, tau):
    '''The probability-flow ODE of N(mean, tau I), solved exactly.'''
    return a2_integrators.reference_exact_flow(x, sigma_start, sigma_end, mean, tau)
"""),
]
