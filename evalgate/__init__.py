"""evalgate: a CI evaluation gate for LLM configuration changes."""

__version__ = "0.1.0"
