"""Engines behind the routes: native continuous batching and vLLM for generators, dynamic batching for encoders."""
