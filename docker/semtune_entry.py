"""``ray submit`` entry point: ``ray submit <cluster config> docker/semtune_entry.py run <study file on the head>``.

``ray submit`` uploads a Python script to the head and runs it there with ``python``, over SSH, where
nothing sets ``RAY_ADDRESS``: without it semtune would start a Ray of its own inside the head instead
of joining the cluster the launcher started. This script points semtune at that cluster and hands
over to the ``semtune`` command line (any of its commands: ``run``, ``resume``, ``report``...).
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("RAY_ADDRESS", "auto")  # the cluster of this head node
    from orchestrator.cli import main

    sys.exit(main(sys.argv[1:]))
