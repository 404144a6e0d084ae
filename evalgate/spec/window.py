"""A model config's local tokenizer (`tokenizer: path/to/tokenizer.json`): loaded with the
optional `tokenizers` package from the file only (nothing is fetched from a hub), so prompt
tokens are counted exactly for the context-window check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalgate.errors import ConfigError, Problem


def load_tokenizer(path: Path, shown: str, line: int | None) -> Any:
    """The tokenizer in `path`; a usage error naming the model config's `tokenizer:` line when
    `tokenizers` is not installed or the file does not load."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ConfigError(Problem(shown, "'tokenizer' needs the 'tokenizers' package (pip "
                                  "install 'evalgate[tokenizer]'), or remove 'tokenizer' to "
                                  "estimate prompt tokens", line, "tokenizer")) from None
    if not path.is_file():
        raise ConfigError(Problem(shown, f"tokenizer file {path.name!r} does not exist ({path})",
                                  line, "tokenizer"))
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exceptions for a bad file
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ConfigError(Problem(shown, f"tokenizer file {path.name!r} does not load: "
                                  f"{message}", line, "tokenizer")) from None
