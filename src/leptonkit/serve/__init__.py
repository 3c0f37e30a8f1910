"""The OpenAI-compatible server: ``create_app(ServeConfig(...))`` builds it; ``leptonkit serve`` runs it."""
