"""Variational families for the zoo's models.

Each guide is an ``nn.Module`` (usually a ``PyroModule``) whose ``forward`` takes the model's
arguments, ``(x, y=None, num_data=None)``, and emits exactly the model's latent sites.

This package sits in the middle of the zoo's layers: it imports only the low modules of
:mod:`zoo` (:mod:`zoo.plates`, :mod:`zoo.priors`, :mod:`zoo.handlers`), never the models.
"""

from guides.amortized import AmortizedNormal, AnalyticPosterior
from guides.dropout import MCDropout, MeanFieldGaussian, SparseVD, VariationalDropout
from guides.meanfield import MeanFieldNormal

__all__ = [
    "AmortizedNormal",
    "AnalyticPosterior",
    "MCDropout",
    "MeanFieldGaussian",
    "MeanFieldNormal",
    "SparseVD",
    "VariationalDropout",
]
