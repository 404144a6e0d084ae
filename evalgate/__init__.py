"""evalgate: a CI evaluation gate for LLM configuration changes."""

__version__ = "0.1.0"
# The name to `pip install`: PyPI's `evalgate` is an unrelated project. Import and command stay
# `evalgate`.
DISTRIBUTION = "pytest-evalgate"
