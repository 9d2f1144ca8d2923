"""``python -m w2v2_manifests ...`` is the same as ``w2v2-manifest ...``."""
import sys

from .cli import main

sys.exit(main())
