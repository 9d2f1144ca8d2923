"""Every file format the plugin reads or writes besides audio and labels, and the converters.

- :mod:`.checkpoint_io`: the safe ``torch.load`` (:func:`~.checkpoint_io.load_checkpoint_file`,
  :class:`~.checkpoint_io.UnsafeCheckpointError`), checkpoints as plain data, atomic writes,
  safetensors;
- :mod:`.fairseq_wav2vec2`: fairseq ``wav2vec2`` pretraining checkpoints (the key map);
- :mod:`.fairseq_ctc`: fairseq ``wav2vec_ctc`` fine-tuned checkpoints;
- :mod:`.pretrained`: opening ``model.w2v_path`` for fine-tuning;
- :mod:`.hf_export`: transformers ``Wav2Vec2ForCTC`` directories.

This package sits below ``w2v2_plugin.models`` / ``tasks`` / ``criterions`` (they import it; it
never imports them: tests/test_interop_layering.py): it takes and returns state dicts, plain
config dicts and model objects. Config field names come from fairseq's model registry.
"""
