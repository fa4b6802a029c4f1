"""goex: thin client for the goexd runtime."""
