"""``python -m orchestrator.cli`` is ``semtune``."""

import sys

from orchestrator.cli import main

sys.exit(main())
