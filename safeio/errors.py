"""The one error type of loading weights and checkpoints."""


class LoadError(ValueError):
    """A weights, prior or checkpoint file that cannot be loaded as asked: unreadable, unsafe (it would run code),
    or not fitting the net (keys or shapes). The message names the file."""
