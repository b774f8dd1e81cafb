"""``python -m bench``: the CPU benchmarks of the search, one table, JSON under ``bench/results/``.

Today that is the replay comparison (:mod:`bench.replay`, with its defaults); the training
throughput (``bench/throughput.py``) and the GPU check (``bench/gpu_check.sh``) run on their own.
"""

from bench.replay import main

raise SystemExit(main())
