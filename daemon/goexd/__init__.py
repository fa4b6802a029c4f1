"""goexd: the goex runtime daemon."""

__version__ = "0.1.0"
