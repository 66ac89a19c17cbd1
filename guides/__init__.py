"""Variational families for the zoo's models.

Each guide is an ``nn.Module`` (usually a ``PyroModule``) whose ``forward`` takes the model's
arguments, ``(x, y=None, num_data=None)``, and emits exactly the model's latent sites.
"""

from guides.amortized import AmortizedNormal, AnalyticPosterior
from guides.meanfield import MeanFieldNormal

__all__ = ["AmortizedNormal", "AnalyticPosterior", "MeanFieldNormal"]
