"""TEMPORARY stand-in for dpcore.perceptual.perception_index until it lands. Delete then."""

from __future__ import annotations

import torch


def perception_index(x, ref):
    def grad_energy(a):
        return (a.diff(dim=-1).pow(2).flatten(1).mean(1) + a.diff(dim=-2).pow(2).flatten(1).mean(1))
    return (torch.log(grad_energy(x) + 1e-8) - torch.log(grad_energy(ref) + 1e-8)).abs()


PERCEPTION_DEFINITION = "stand-in: |log gradient-energy ratio| (to be replaced)"


