"""The HTTP edge: the Litestar app, routes, auth, problem+json, and the CLI that runs it all."""
