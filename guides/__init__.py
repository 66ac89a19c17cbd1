"""Variational families for the zoo's models.

Each guide is an ``nn.Module`` (usually a ``PyroModule``) whose ``forward`` takes the model's
arguments, ``(x, y=None, num_data=None)``, and emits exactly the model's latent sites.
"""

# zoo's model families import these guides, and some guides use zoo's building blocks: loading
# zoo first makes `import guides...` work in a fresh interpreter whichever is imported first.
import zoo  # noqa: F401  isort: skip
from guides.amortized import AmortizedNormal, AnalyticPosterior
from guides.dropout import MCDropout, MeanFieldGaussian, SparseVD, VariationalDropout
from guides.lrt import LocalReparameterization
from guides.meanfield import MeanFieldNormal

__all__ = [
    "AmortizedNormal",
    "AnalyticPosterior",
    "LocalReparameterization",
    "MCDropout",
    "MeanFieldGaussian",
    "MeanFieldNormal",
    "SparseVD",
    "VariationalDropout",
]
