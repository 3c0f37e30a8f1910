"""SDK fixtures: the training tests' tiny BERT (real MiniLM tokenizer), shared rather than rebuilt."""

from tests.train.conftest import tiny_bert_dir  # noqa: F401
