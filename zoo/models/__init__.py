"""Model families, one file each; every family lists its registry entries as ``SPECS``.

:mod:`zoo.registry` collects them; this package registers nothing itself.  :mod:`custom` has
no entries: it holds the parts of a user's net that :func:`zoo.from_module` puts together.
"""

from zoo.models import (
    attention,
    bnn,
    bpca,
    custom,
    ppca,
    shrink,
    structured,
    vae,
    vbpca,
    weights,
)

#: The family modules, each with a ``SPECS`` tuple of :class:`zoo.spec.ModelSpec`.
FAMILIES = (attention, bnn, bpca, ppca, structured, vae)

__all__ = [
    "FAMILIES",
    "attention",
    "bnn",
    "bpca",
    "custom",
    "ppca",
    "shrink",
    "structured",
    "vae",
    "vbpca",
    "weights",
]
