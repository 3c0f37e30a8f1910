"""HTTP routes: the OpenAI API, leptonkit's task routes and the admin routes (health, readiness, adapters)."""
