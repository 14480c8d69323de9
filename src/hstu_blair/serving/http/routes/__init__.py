"""The routers of the service, one module per group of endpoints; each has ``router(ctx)``."""
