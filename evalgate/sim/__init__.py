from evalgate.sim.server import *  # noqa: F403
from evalgate.sim.server import __all__  # noqa: F401
