"""Moved to :mod:`onethinker.contract.tasks` (the data contract); kept so existing imports keep working."""

from onethinker.contract.tasks import *  # noqa: F403
from onethinker.contract.tasks import __all__  # noqa: F401
