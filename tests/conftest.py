"""Test-wide set-up.

Without a GPU, Triton kernels run on the CPU under the interpreter. TRITON_INTERPRET must be set
before triton is first imported, hence here, at collection time.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The engine tunes CPU convolutions on first use and caches the choices under the user's cache
# folder; the tests share one fresh folder per run (the same shapes recur across tests) and never
# read or write the user's own.
if "SWIFTCUDA_TEST_CACHE" not in os.environ:
    import tempfile

    os.environ["SWIFTCUDA_TEST_CACHE"] = tempfile.mkdtemp(prefix="swiftcuda-test-cache-")
os.environ["XDG_CACHE_HOME"] = os.environ["SWIFTCUDA_TEST_CACHE"]
