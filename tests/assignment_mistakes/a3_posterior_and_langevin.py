"""Common wrong answers of assignment A3 (the posterior over noise levels and Langevin); each must lose points
with its message.

Each entry replaces the solution cell `cell` by a wrong answer; the graded cell `test` must then lose its points
and show `message`."""

MISTAKES = [
    dict(cell='log_p_sigma', test='test_log_p_sigma', message='the log-sum-exp is missing',
         source="""def log_p_sigma(x, sigma, weights, means, tau):
    '''log p_sigma(x) of the mixture sum_k w_k N(mu_k, tau_k I), noised to level sigma (one per sample).

    p_sigma(x) = sum_k w_k N(x; mu_k, (tau_k + sigma^2) I), and in d dimensions
    log N(x; mu, v I) = -d/2 log(2 pi v) - |x - mu|^2 / (2 v).

    x:       [B, d] points
    sigma:   [B]    one noise level per point
    weights: [K]    mixture weights w_k (sum to 1)
    means:   [K, d] component means mu_k
    tau:     [K]    component variances tau_k
    Returns log p_sigma(x), shape [B] (finite even where p_sigma(x) itself is below 1e-308).
    '''
    d = x.shape[1]
    var = tau[None, :] + sigma[:, None] ** 2
    sq = ((x[:, None, :] - means[None, :, :]) ** 2).sum(dim=2)
    dens = weights[None, :] * (2 * math.pi * var) ** (-d / 2) * torch.exp(-0.5 * sq / var)
    return torch.log(dens.sum(dim=1))   # densities, then the log: no log-sum-exp"""),
    dict(cell='log_p_sigma', test='test_log_p_sigma', message='leaving out the normalising constant',
         source="""def log_p_sigma(x, sigma, weights, means, tau):
    '''log p_sigma(x) of the mixture sum_k w_k N(mu_k, tau_k I), noised to level sigma (one per sample).

    p_sigma(x) = sum_k w_k N(x; mu_k, (tau_k + sigma^2) I), and in d dimensions
    log N(x; mu, v I) = -d/2 log(2 pi v) - |x - mu|^2 / (2 v).

    x:       [B, d] points
    sigma:   [B]    one noise level per point
    weights: [K]    mixture weights w_k (sum to 1)
    means:   [K, d] component means mu_k
    tau:     [K]    component variances tau_k
    Returns log p_sigma(x), shape [B] (finite even where p_sigma(x) itself is below 1e-308).
    '''
    var = tau[None, :] + sigma[:, None] ** 2
    sq = ((x[:, None, :] - means[None, :, :]) ** 2).sum(dim=2)
    return torch.logsumexp(torch.log(weights)[None, :] - 0.5 * sq / var, dim=1)   # no normalising constant"""),
    dict(cell='log_sigma_posterior', test='test_log_sigma_posterior', message='leaving out the prior p(sigma)',
         source="""def log_sigma_posterior(log_density, x, grid, log_prior):
    '''log p(sigma_i | x) on a grid of noise levels: p(sigma_i | x) = p_(sigma_i)(x) p(sigma_i) / sum_j (same).

    log_density: a function (x [B, d], sigma [B]) -> log p_sigma(x) [B], e.g. mixture.log_prob
    x:           [B, d] points
    grid:        [L]    the noise levels sigma_1, ..., sigma_L
    log_prior:   [L]    log p(sigma_i), up to a constant (it need not be normalised)
    Returns [B, L]: row b is log p(sigma_i | x_b), so that exp of a row sums to 1.
    '''
    B = x.shape[0]
    log_joint = torch.stack([log_density(x, torch.full((B,), float(s), dtype=x.dtype)) for s in grid], dim=1)
    return log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True)   # the prior is forgotten"""),
    dict(cell='log_sigma_posterior', test='test_log_sigma_posterior', message='the log-sum-exp is missing',
         source="""def log_sigma_posterior(log_density, x, grid, log_prior):
    '''log p(sigma_i | x) on a grid of noise levels: p(sigma_i | x) = p_(sigma_i)(x) p(sigma_i) / sum_j (same).

    log_density: a function (x [B, d], sigma [B]) -> log p_sigma(x) [B], e.g. mixture.log_prob
    x:           [B, d] points
    grid:        [L]    the noise levels sigma_1, ..., sigma_L
    log_prior:   [L]    log p(sigma_i), up to a constant (it need not be normalised)
    Returns [B, L]: row b is log p(sigma_i | x_b), so that exp of a row sums to 1.
    '''
    B = x.shape[0]
    log_joint = torch.stack([log_density(x, torch.full((B,), float(s), dtype=x.dtype)) for s in grid], dim=1)
    p = torch.exp(log_joint + log_prior[None, :])
    return torch.log(p / p.sum(dim=1, keepdim=True))   # normalised outside the logs"""),
    dict(cell='ula_step', test='test_ula_step', message='a drift eta * score instead of (eta/2) * score',
         source="""def ula_step(D, x, sigma, eta, z):
    '''One unadjusted Langevin step at fixed noise levels (the x-update of DLG).

    x' = x + (eta/2) s(x, sigma) + sqrt(eta) z,   with the score s(x, sigma) = (D(x, sigma) - x) / sigma^2.

    D:     a denoiser D(x, sigma), sigma of shape [B]
    x:     [B, d] current states
    sigma: [B]    the noise level of each chain
    eta:   float  the absolute step size
    z:     [B, d] standard normal noise (given, so that the step is deterministic)
    Returns x', shape [B, d].
    '''
    score = (D(x, sigma) - x) / sigma[:, None] ** 2
    return x + eta * score + math.sqrt(eta) * z   # drift eta instead of eta/2"""),
    dict(cell='ula_step', test='test_ula_step', message='noise sqrt(2 eta) z instead of sqrt(eta) z',
         source="""def ula_step(D, x, sigma, eta, z):
    '''One unadjusted Langevin step at fixed noise levels (the x-update of DLG).

    x' = x + (eta/2) s(x, sigma) + sqrt(eta) z,   with the score s(x, sigma) = (D(x, sigma) - x) / sigma^2.

    D:     a denoiser D(x, sigma), sigma of shape [B]
    x:     [B, d] current states
    sigma: [B]    the noise level of each chain
    eta:   float  the absolute step size
    z:     [B, d] standard normal noise (given, so that the step is deterministic)
    Returns x', shape [B, d].
    '''
    score = (D(x, sigma) - x) / sigma[:, None] ** 2
    return x + 0.5 * eta * score + math.sqrt(2 * eta) * z   # noise of the other convention"""),
    dict(cell='stability_bound', test='test_stability_bound', message='a factor 2 too small',
         source="""def stability_bound(tau_min, sigma):
    '''The largest step eta for which ULA on the noised mixture does not diverge.

    On a Gaussian N(mu, v I) a ULA step multiplies x - mu by (1 - eta / (2 v)) before adding noise; the chain
    diverges once |1 - eta / (2 v)| > 1. At level sigma the narrowest component has v = tau_min + sigma^2.

    tau_min: float  the smallest component variance of the mixture
    sigma:   [B]    noise levels
    Returns the bound for each level, shape [B].
    '''
    return 2 * (tau_min + sigma**2)   # off by a factor 2"""),
    dict(cell='stability_bound', test='test_stability_bound', message='sigma left out',
         source="""def stability_bound(tau_min, sigma):
    '''The largest step eta for which ULA on the noised mixture does not diverge.

    On a Gaussian N(mu, v I) a ULA step multiplies x - mu by (1 - eta / (2 v)) before adding noise; the chain
    diverges once |1 - eta / (2 v)| > 1. At level sigma the narrowest component has v = tau_min + sigma^2.

    tau_min: float  the smallest component variance of the mixture
    sigma:   [B]    noise levels
    Returns the bound for each level, shape [B].
    '''
    return 4 * tau_min * torch.ones_like(sigma)   # the noise level is forgotten"""),
    dict(cell='mala_log_acceptance', test='test_mala_log_acceptance', message="leaving out the proposal's reverse term",
         source="""def mala_log_acceptance(log_prob, score, x, x_prop, sigma, eta):
    '''MALA's log Metropolis-Hastings ratio for the move x -> x_prop (not clipped at 0).

    log alpha = log p_sigma(x') - log p_sigma(x) + log q(x | x') - log q(x' | x),
    with the Langevin proposal q(y | x) = N(y; x + (eta/2) s(x, sigma), eta I).

    log_prob: a function (x [B, d], sigma [B]) -> log p_sigma(x) [B]
    score:    a function (x [B, d], sigma [B]) -> s(x, sigma) [B, d]
    x, x_prop: [B, d] current states and proposals
    sigma:    [B]    noise levels
    eta:      float  the step size
    Returns log alpha, shape [B].
    '''
    log_q_forward = -((x_prop - x - 0.5 * eta * score(x, sigma)) ** 2).sum(dim=1) / (2 * eta)
    return log_prob(x_prop, sigma) - log_prob(x, sigma) - log_q_forward   # the reverse term is missing"""),
    dict(cell='mala_log_acceptance', test='test_mala_log_acceptance', message='min(0, log ratio)',
         source="""def mala_log_acceptance(log_prob, score, x, x_prop, sigma, eta):
    '''MALA's log Metropolis-Hastings ratio for the move x -> x_prop (not clipped at 0).

    log alpha = log p_sigma(x') - log p_sigma(x) + log q(x | x') - log q(x' | x),
    with the Langevin proposal q(y | x) = N(y; x + (eta/2) s(x, sigma), eta I).

    log_prob: a function (x [B, d], sigma [B]) -> log p_sigma(x) [B]
    score:    a function (x [B, d], sigma [B]) -> s(x, sigma) [B, d]
    x, x_prop: [B, d] current states and proposals
    sigma:    [B]    noise levels
    eta:      float  the step size
    Returns log alpha, shape [B].
    '''
    def log_q(y, frm):
        return -((y - frm - 0.5 * eta * score(frm, sigma)) ** 2).sum(dim=1) / (2 * eta)

    log_alpha = log_prob(x_prop, sigma) - log_prob(x, sigma) + log_q(x, x_prop) - log_q(x_prop, x)
    return torch.clamp(log_alpha, max=0.0)   # the min(0, .) belongs to the accept step"""),
]

# added for issue 20: the library's own answer called from the solution
MISTAKES += [
    dict(cell='stability_bound', test='test_stability_bound',
         message="implement this yourself (it is what this exercise is for)",
         source="""def stability_bound(tau_min, sigma):
    '''The largest stable ULA step size at level sigma for the narrowest component.'''
    from dmcmc_edu.core.langevin import langevin_stability_bound
    return langevin_stability_bound(tau_min, sigma)
"""),
]
