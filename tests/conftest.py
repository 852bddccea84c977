"""Suite-wide settings.

One intra-op thread per test process: the suite runs on small 2-core machines, often beside other work,
and OpenMP's spin-waiting makes a 2-thread forward pass tens of times slower under contention.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
