"""goexd: the goex runtime daemon."""
