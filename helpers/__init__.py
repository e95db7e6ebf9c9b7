"""Reference implementations shared by the course notebooks.

One module per idea (see README.md); each public function names the lesson that teaches it.
Importing the package only quiets two noisy import-time log lines (torchao registering enum
types with torch.compile, and the transformers weight-loading progress bar), so that notebook
outputs stay the same from run to run.
"""

import logging
import os

logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
