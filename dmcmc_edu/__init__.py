"""dmcmc_edu: Denoising MCMC for diffusion models."""
