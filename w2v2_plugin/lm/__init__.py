"""N-gram LM tooling for ``w2v2-lm``: finding and running KenLM's ``lmplz``/``build_binary``,
and building a word (or unit) LM with its lexicon.

Reading an LM file's header (:mod:`w2v2_plugin.decoding.lm_files`) stays in the decoder core:
the decoders check every LM before KenLM loads it, and the core must not depend on this
package (which itself builds on the core's units, lexicon and LM checks).
"""
