"""The errors a user can fix, which the command line prints in one line (any other exception is a bug and keeps its
traceback): a configuration value (`ConfigError`, naming its key) and a file that cannot be loaded (`LoadError`).
Data errors (`datamodules.io.DataError`) and checkpoint errors are `UserError`s too."""
from __future__ import annotations

from typing import Optional


class UserError(Exception):
    """A problem in what the user gave (a config value, a file, data), phrased for them in one line."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work, raised where the value is checked. `key` is the dotted key at fault
    ("model.netG", "data.crop_size", or a command-line option such as "--direction"); None when no single key is
    (a missing config file, an override without '='). The message names the key and what was expected."""

    def __init__(self, message: str, key: Optional[str] = None):
        super().__init__(message)
        self.key = key

    def within(self, section: str) -> "ConfigError":
        """The same error one section down: a net builder checks "netG", which a run config calls "model.netG".
        The message, which starts with the key, is prefixed alike."""
        if self.key is None:
            return self
        message = str(self)
        message = f"{section}.{message}" if message.startswith(self.key) else f"{section}.{self.key}: {message}"
        return ConfigError(message, key=f"{section}.{self.key}")


class LoadError(UserError, ValueError):
    """A weights, prior or checkpoint file that cannot be loaded as asked: unreadable, unsafe (it would run code),
    or not fitting the net (keys or shapes). The message names the file."""
