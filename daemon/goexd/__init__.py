"""goexd: the goex runtime daemon."""

import os

__version__ = "0.1.0"

# Set before anything imports grpc (`python -m goexd.main` imports this package first): grpc's
# fork handlers crashed (SIGSEGV in cygrpc) in children of a plain fork() of the daemon. goexd
# never forks without exec, and its children are started with vfork.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
