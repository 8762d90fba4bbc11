"""``python -m plif_zoo.cli ...``: the same as the ``plif-zoo`` command."""

import sys

from . import main

sys.exit(main())
