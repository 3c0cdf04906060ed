"""``python -m infra up|down|status``: start, stop or show the local stack (``infra.stack.main``)."""

import sys

from infra.stack import main

sys.exit(main())
