"""The paper, small: Denoising MCMC and Denoising Langevin Gibbs in eleven short files.

Read them in this order (each is named after the concept it holds):

1. ``contract.py``      -- the one model contract, a denoiser D(x, sigma) with sigma of shape [B];
   score = (D - x) / sigma^2; ``CountingDenoiser``, which counts NFE.
2. ``schedules.py``     -- noise schedules per sample (Karras, geometric, linear, on the paper's grid), the check
   of levels an integrator is given, and the paper's 1000-level grid.
3. ``random.py``        -- every random draw (normal, uniform, categorical), one generator or one per sample.
4. ``integrators.py``   -- the paper's six integrators (KAR1, KAR2, probability-flow Euler, RK45, reverse
   diffusion, Euler-Maruyama), each on per-sample levels ``sigmas`` or from a per-sample sigma; sampling from noise.
5. ``tweedie.py``       -- the last denoising step, Tweedie's formula.
6. ``langevin.py``      -- the x-update: ``ula_step`` and ``mala_step``.
7. ``sigma_updates.py`` -- the sigma-update: exact posterior, classifier argmax (the paper), classifier draw.
8. ``dlg.py``           -- one Gibbs step on (x, sigma): ``dlg_init`` and ``dlg_step`` with State and Info.
9. ``pick.py``          -- the smallest-sigma pick among a block of ``n_skip`` Gibbs steps.
10. ``ledger.py``       -- the NFE ledger: the paper's accounting beside the full one.
11. ``sampler.py``      -- the whole algorithm: settings, initialisation, burn-in, output rounds.
It imports only torch, numpy, scipy, a few pure-Python standard modules and itself (``tests/test_core_imports.py``
checks that whitelist over its AST, and that importing it loads nothing else of the package); it knows no solver
beyond its six (``dmcmc_edu.registry`` joins those of ``dmcmc_edu.solvers``).
"""
