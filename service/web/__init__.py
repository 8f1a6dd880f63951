"""The HTTP app: routes, middleware, security, metrics, streaming and the chat page; it only calls the engine."""
