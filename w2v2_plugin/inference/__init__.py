"""The ``w2v2-infer`` application: inputs, emission cache, parallel decoding, LM-weight
tuning and the end-to-end pipeline, built on :mod:`w2v2_plugin.decoding`.

The acoustic-model side (model loading, emissions, chunking) still lives in
:mod:`w2v2_plugin.decoding.emissions`; it is imported from there.
"""
