"""CTC decoders (Viterbi, lexicon + KenLM beam search, lexicon-free).

The public surface: :class:`UnitDictionary`, :class:`DecoderConfig`, :func:`build_decoder`,
:class:`Hypothesis`, :class:`DecodingError`. Nothing here imports torch: the fairseq-facing
parts (model loading, emissions, chunking) are :mod:`w2v2_plugin.inference.emissions`. LM
building is :mod:`w2v2_plugin.lm`, the ``w2v2-infer`` application :mod:`w2v2_plugin.inference`;
the file formats shared with the manifest generator are :mod:`w2v2_common.units`.
"""
from .decoders import DecoderConfig, Hypothesis, build_decoder  # noqa: F401
from .errors import DecodingError  # noqa: F401
from .units import UnitDictionary  # noqa: F401
