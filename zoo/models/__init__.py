"""Model families, one file each. Importing this package registers every family."""

from zoo.models import attention, bnn, ppca, vae  # noqa: F401
