"""Training loops: the toy denoiser (``denoiser``), the MNIST score model (``score``), the noise-level classifier
(``classifier``), and the denoising score matching losses they share (``losses``).
"""
