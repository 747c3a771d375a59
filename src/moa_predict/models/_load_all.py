"""Imports every model module so that each registers its name."""

from . import prior  # noqa: F401
from . import knn  # noqa: F401
from . import paper_nn  # noqa: F401
from . import mlp  # noqa: F401
from . import resnet  # noqa: F401
from . import cnn1d  # noqa: F401
from . import linear  # noqa: F401
from . import blend  # noqa: F401
