"""The FastAPI gateway: REST in, gRPC to Triton out, CRUD beside it."""
