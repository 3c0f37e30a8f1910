"""Task recipes: thin, linear scripts that build data and model and hand them to the shared loop."""
