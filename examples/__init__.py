"""Runnable examples for w2v2-plugin (``python -m examples.demo.run``)."""
