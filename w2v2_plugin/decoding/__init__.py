"""CTC decoders (Viterbi, lexicon + KenLM beam search, lexicon-free)."""
