"""End-to-end wav2vec 2.0 demo on an embedded, espeak-ng-synthesized English corpus.

``python -m examples.demo.synth`` builds the corpus; ``python -m examples.demo.run`` runs the
whole recipe (manifests, pretraining, fine-tuning, n-gram LM, decoding, results table).
"""
