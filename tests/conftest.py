"""Test-wide set-up.

Without a GPU, Triton kernels run on the CPU under the interpreter. TRITON_INTERPRET must be set
before triton is first imported, hence here, at collection time.

Random inputs: every test runs with one seed, ``$SWIFTCUDA_TEST_SEED`` when set, else a stable hash
of the test's node id. Before each test's set-up the global generators (torch, numpy, random) are
seeded with it; the ``generator`` fixture is a ``torch.Generator`` seeded with it and the ``seed``
fixture is the number itself (for subprocesses and the CUDA emulator's shuffled schedule). A failing
test's report ends with a section naming its seed and the command that reruns it identically::

    SWIFTCUDA_TEST_SEED=1234567 python -m pytest 'tests/ops/test_memory_read.py::test_matches_spec[...]'
"""

import hashlib
import os
import random

import numpy as np
import pytest
import torch

from tests.triton_interpreter import skip_repeated_patching

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
if os.environ.get("TRITON_INTERPRET") == "1":
    skip_repeated_patching()  # the interpreted kernels twice as fast, results unchanged (see there)

# The engine tunes CPU convolutions on first use and caches the choices under the user's cache
# folder; the tests share one fresh folder per run (the same shapes recur across tests) and never
# read or write the user's own.
if "SWIFTCUDA_TEST_CACHE" not in os.environ:
    import tempfile

    os.environ["SWIFTCUDA_TEST_CACHE"] = tempfile.mkdtemp(prefix="swiftcuda-test-cache-")
os.environ["XDG_CACHE_HOME"] = os.environ["SWIFTCUDA_TEST_CACHE"]

#: Environment variable that fixes every test's seed (a non-negative integer).
SEED_VARIABLE = "SWIFTCUDA_TEST_SEED"
_SEED_KEY = pytest.StashKey[int]()


def seed_for(nodeid: str) -> int:
    """The seed of the test ``nodeid``: ``$SWIFTCUDA_TEST_SEED``, else a stable 31-bit hash of the id."""
    value = os.environ.get(SEED_VARIABLE, "").strip()
    if value:
        if not value.isdigit():
            raise pytest.UsageError(f"{SEED_VARIABLE}={value!r}: expected a non-negative integer")
        return int(value)
    return int.from_bytes(hashlib.sha256(nodeid.encode()).digest()[:4], "little") & 0x7FFFFFFF


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Seed the global generators before any fixture of the test is set up (module-scoped ones
    created for it included), so unseeded draws and parameter initialisations replay too."""
    seed = seed_for(item.nodeid)
    item.stash[_SEED_KEY] = seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


#: Environment variable that turns a skip for a missing install into a failure (CI sets it: there
#: every extra is installed, so a test that skips for want of one would hide a broken install).
REQUIRE_EXTRAS_VARIABLE = "SWIFTCUDA_REQUIRE_EXTRAS"


def _fail_if_an_install_is_missing(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under ``$SWIFTCUDA_REQUIRE_EXTRAS=1``, a skip whose reason asks for a ``pip install`` fails."""
    if not report.skipped or os.environ.get(REQUIRE_EXTRAS_VARIABLE) != "1":
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if "pip install" in reason:
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_EXTRAS_VARIABLE}=1, but this skipped for a missing install: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """A module that skips at import for a missing install fails under ``$SWIFTCUDA_REQUIRE_EXTRAS``."""
    report = yield
    _fail_if_an_install_is_missing(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Add the seed and the rerun command to a failing test's report; a test that skips for a
    missing install fails under ``$SWIFTCUDA_REQUIRE_EXTRAS``."""
    report = yield
    _fail_if_an_install_is_missing(report)
    if report.failed and _SEED_KEY in item.stash:
        seed = item.stash[_SEED_KEY]
        report.sections.append(
            ("swiftcuda test seed", f"seed {seed}; rerun: {SEED_VARIABLE}={seed} python -m pytest '{item.nodeid}'")
        )
    return report


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """This test's seed (see the module docstring)."""
    return request.node.stash[_SEED_KEY] if _SEED_KEY in request.node.stash else seed_for(request.node.nodeid)


@pytest.fixture
def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with this test's seed: the test's random inputs come from it."""
    return torch.Generator().manual_seed(seed)
