"""voice-satellite: Wyoming satellite and cloud speech bridge for Home Assistant."""

import os

# numpy's BLAS would start a pool of threads that keep spinning after each small array
# operation: on an idle satellite that cost more CPU than the mic, the VAD and the wake word
# together. Nothing here multiplies matrices large enough to gain from threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
