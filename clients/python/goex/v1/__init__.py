"""Generated protobuf and gRPC stubs for goex.v1 (regenerate with `make proto`)."""
