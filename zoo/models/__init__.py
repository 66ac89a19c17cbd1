"""Model families, one file each; every family lists its registry entries as ``SPECS``.

:mod:`zoo.registry` collects them; this package registers nothing itself.
"""

from zoo.models import attention, bnn, ppca, vae

#: The family modules, each with a ``SPECS`` tuple of :class:`zoo.spec.ModelSpec`.
FAMILIES = (attention, bnn, ppca, vae)

__all__ = ["FAMILIES", "attention", "bnn", "ppca", "vae"]
