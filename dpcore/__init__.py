"""dpcore: the maths of dpflow (torch only, no orchestration and no I/O).

The core is the variance-scaled reverse diffusion of Wang, Bi, Zhang, Yuan,
"Traversing Distortion-Perception Tradeoff using a Single Score-Based Generative
Model" (CVPR 2025, arXiv:2503.20297): one denoiser ``D(x, sigma)`` reaches every
point between the MMSE estimate (lambda = 0) and a posterior sample (lambda = 1).
"""

from dpcore.denoisers import Denoiser, GaussianDenoiser, GMMDenoiser
from dpcore.sampler import variance_scaled_denoise, variance_scaled_dps

__all__ = [
    "Denoiser",
    "GaussianDenoiser",
    "GMMDenoiser",
    "variance_scaled_denoise",
    "variance_scaled_dps",
]
