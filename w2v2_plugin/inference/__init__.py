"""The ``w2v2-infer`` application: inputs, emission cache, parallel decoding, LM-weight
tuning, the acoustic model (:mod:`~w2v2_plugin.inference.emissions`: model loading, emissions,
chunking) and the end-to-end pipeline, built on the decoder core :mod:`w2v2_plugin.decoding`.
"""
