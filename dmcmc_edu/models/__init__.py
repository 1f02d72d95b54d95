"""Networks and model adapters, each a denoiser of the contract or a noise-level classifier.

``learned`` (toy MLP denoiser), ``unet`` (MNIST score model), ``preconditioning``
(the EDM factors both use), ``classifier`` (noise-level classifier and its file
format), ``ncsnpp``/``score_sde`` (pretrained score_sde checkpoints) and
``diffusers_adapters`` (the optional extra ``dmcmc_edu[diffusers]``).
"""
