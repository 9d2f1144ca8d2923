"""Helpers shared by the tests and the benchmarks; not part of the installed packages.

``tests/conftest.py`` and the benchmark scripts put the repository root on ``sys.path``.
"""
