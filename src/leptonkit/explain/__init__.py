"""Explanations: which words made a classification or NER model decide, by Captum attributions on embeddings.

- :mod:`leptonkit.explain.explainer`: ``explain(loaded, text, label=, method=, steps=) -> dict`` (the public API);
- :mod:`leptonkit.explain.attribution`: Captum integrated gradients / gradient x input on the input embeddings;
- :mod:`leptonkit.explain.words`: sub-words back to words with character offsets;
- :mod:`leptonkit.explain.render`: terminal colouring and the self-contained HTML page;
- :mod:`leptonkit.explain.serving`: ``explain: true`` for the server, off the batching path;
- :mod:`leptonkit.explain.checks`: the bad-input checks (importable without torch).
"""
