"""Torch-free foundations shared by ``w2v2_plugin`` and ``w2v2_manifests``.

Nothing here imports torch or fairseq (``tests/test_torch_free.py`` checks it), so the
manifest generator can use it on a machine without either:

* :mod:`w2v2_common.errors`: :class:`W2v2Error`, the base of every user-facing error;
* :mod:`w2v2_common.fileio`: temporary files with the umask's mode and the one atomic writer;
* :mod:`w2v2_common.units`: the fairseq dictionary (``dict.*.txt``) and label formats, the word
  boundaries and letters <-> text, shared by the manifest generator, training and decoding.
"""
