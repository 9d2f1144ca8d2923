"""w2v2-plugin: wav2vec 2.0 for fairseq as a ``--user-dir`` plugin.

Importing this package registers the plugin's tasks, models and criteria with fairseq's
registries, which is what ``--user-dir`` / ``common.user_dir`` does.
"""

__version__ = "0.1.0"

import logging

# fairseq logs an INFO line about tensorboardX from an unrelated task at import time; keep
# the plugin's command-line tools quiet about it.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

# Registration order matters (datasets first: tasks import them), so these lines are not
# sorted, and they follow the logging setup above on purpose.
from . import data  # noqa: E402, F401, I001
from . import models  # noqa: E402, F401, I001
from . import criterions  # noqa: E402, F401, I001
from . import tasks  # noqa: E402, F401, I001
