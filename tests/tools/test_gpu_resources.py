"""Every Triton kernel compiled for sm_80 and sm_90 at the engine's launches, no GPU needed.

The launchers run at SwiftNet's shapes on fake CUDA tensors with their launches recorded
(:mod:`tools.gpu_resources`); each launch is compiled with the JIT's own specialization and
ptxas's report and the SASS are checked:

- every launch of the memory read, its split merge and the update's best match, at R18 and R50,
  float32 / float16 / bfloat16, one object (the most memory splits), two and four, and the read
  with its split count forced to one, on both GPUs: compiles, spills nothing, and keeps at least
  16 warps resident per SM (read and best match);
- every launch of the STM family's read (top-k sweep and readout, full-softmax read and usage) at
  XMem's, Cutie's and STCN's shapes, the same dtypes and object counts, automatic and one split:
  compiles, spills nothing, keeps at least 16 warps per SM, 16-bit dots on the tensor cores; the
  CUDA kernels of the family's read (nvcc, when the toolkit is there) spill nothing;
- every 16-bit dot reaches the tensor cores (HMMA on sm_80, HGMMA on sm_90);
- the other kernels (rsp, soft aggregation, frame variation, selection, append) compile, at one
  representative dtype and object count.

Compiles are cached by content hash (``$SWIFTCUDA_GPU_CACHE``): a kernel edit recompiles only what
it changed. Uncached, the whole file takes about two minutes on two cores.
"""

from __future__ import annotations

import pytest

triton = pytest.importorskip("triton")

from tools import gpu_resources as R  # noqa: E402

pytestmark = pytest.mark.gpu_compile


def _tool_available() -> bool:
    """ptxas and cuobjdump, from Triton's wheel (3.6 and 3.8 both bundle them) or the CUDA toolkit."""
    return all(R.tool_path(name) for name in ("ptxas", "cuobjdump"))


if not _tool_available():  # pragma: no cover - Triton wheels bundle ptxas
    pytest.skip("neither Triton's wheel nor CUDA_HOME has ptxas and cuobjdump", allow_module_level=True)


@pytest.fixture(scope="module")
def hot_results() -> list[R.Resources]:
    """The read, merge and best-match launches at every model, dtype and object count, both arches."""
    launches = [
        launch for arch in R.ARCHES for launch in R.record_engine_launches(arch) if launch.kernel in R.HOT_KERNELS
    ]
    return R.compile_all(launches)


@pytest.fixture(scope="module")
def other_results() -> list[R.Resources]:
    launches = [
        launch
        for arch in R.ARCHES
        for launch in R.record_engine_launches(arch, models=["R18"], dtypes=["float16"], objects=[4])
        if launch.kernel not in R.HOT_KERNELS
    ]
    return R.compile_all(launches)


@pytest.fixture(scope="module")
def family_results() -> list[R.Resources]:
    """The family's read launches at every model, dtype and object count, both arches."""
    return R.compile_all([launch for arch in R.ARCHES for launch in R.record_family_launches(arch)])


def _describe(results: list[R.Resources]) -> str:
    return "\n" + R.format_table(results)


def test_every_hot_launch_is_recorded(hot_results):
    """Read, merge and best match at both models, three dtypes, with and without splits."""
    seen = {(r.kernel, r.arch, r.case.split()[0], r.case.split()[1]) for r in hot_results}
    for arch in R.ARCHES:
        for model in R.MODELS:
            for dtype in R.DTYPES:
                assert ("memory_read_kernel", arch, model, dtype) in seen
                assert ("best_match_kernel", arch, model, dtype) in seen
    assert any(r.kernel == "memory_read_combine_kernel" for r in hot_results), "no launch used memory splits"
    assert any("NUM_SPLITS=1 " in r.specialization + " " for r in hot_results), "every launch used splits"
    # Two objects, and the read of one object (the most splits) with its split count forced to one.
    assert any(r.case.endswith("O=2") for r in hot_results)
    for arch in R.ARCHES:
        for model in R.MODELS:
            one_object = [
                r
                for r in hot_results
                if r.kernel == "memory_read_kernel"
                and r.arch == arch
                and r.case.startswith(model)
                and r.case.endswith("O=1")
            ]
            assert any("NUM_SPLITS=1 " in r.specialization + " " for r in one_object), (arch, model)


def test_hot_kernels_compile_without_spills(hot_results):
    failed = [r for r in hot_results if r.error or r.spills or r.local_instructions]
    assert not failed, _describe(failed)


def test_read_and_best_match_keep_16_warps_per_sm(hot_results):
    low = [r for r in hot_results if r.kernel != "memory_read_combine_kernel" and r.occupancy()[1] < 16]
    assert not low, _describe(low)


def test_half_dots_reach_the_tensor_cores(hot_results):
    half = [r for r in hot_results if "float16" in r.case and r.kernel != "memory_read_combine_kernel"]
    assert half and all(r.half_dot for r in half), "a 16-bit launch without a 16-bit dot: the check is blind"
    missed = [r for r in half if r.mma != {80: "HMMA", 90: "HGMMA"}[r.arch]]
    assert not missed, _describe(missed)


def test_other_kernels_compile(other_results):
    kernels = {r.kernel for r in other_results}
    assert {
        "select_novel_kernel",
        "append_kernel",
        "rsp_kernel",
        "soft_aggregate_kernel",
        "frame_variation_kernel",
    } <= kernels
    failed = [r for r in other_results if R.problems(r)]
    assert not failed, _describe(failed)


def test_engine_memory_is_aligned_for_vector_loads():
    """The read's key rows start 16-byte aligned with strides Triton specialises as divisible by 16."""
    launches = R.record_engine_launches(90, models=["R18"], dtypes=["float16"], objects=[4])
    read = next(launch for launch in launches if launch.kernel == "memory_read_kernel")
    mem_key, mem_val = read.args[0], read.args[1]
    assert mem_key[0] == "ptr" and mem_key[2] % 16 == 0 and mem_val[2] % 16 == 0
    stride_kc, stride_vc = read.args[14], read.args[17]  # channel strides of keys and values
    assert stride_kc % 16 == 0 and stride_vc % 16 == 0, (stride_kc, stride_vc)
    match = next(launch for launch in launches if launch.kernel == "best_match_kernel")
    assert match.args[0][2] % 16 == 0, "the update's memory view is not re-aligned"


def test_every_family_launch_is_recorded(family_results):
    seen = {(r.kernel, r.arch, r.case.split()[0]) for r in family_results}
    for arch in R.ARCHES:
        for model in R.FAMILY_MODELS:
            kernels = (
                ("family_read_kernel", "family_usage_kernel")
                if model.endswith("full")
                else ("topk_sweep_kernel", "topk_readout_kernel")
            )
            for kernel in kernels:
                assert (kernel, arch, model) in seen


def test_family_kernels_spill_nothing_and_keep_16_warps(family_results):
    failed = [r for r in family_results if R.problems(r) or r.local_instructions or r.occupancy()[1] < 16]
    assert not failed, _describe(failed)


def test_family_half_dots_reach_the_tensor_cores(family_results):
    half = [r for r in family_results if "float16" in r.case and r.kernel != "topk_readout_kernel"]
    assert half and all(r.half_dot for r in half), "a 16-bit launch without a 16-bit dot: the check is blind"
    missed = [r for r in half if r.mma not in ("HMMA", "HGMMA")]
    assert not missed, _describe(missed)


@pytest.mark.skipif(R.tool_path("nvcc") is None, reason="no nvcc (set CUDA_HOME) for the CUDA kernels")
def test_cuda_family_kernels_spill_nothing():
    results = [r for arch in R.ARCHES for r in R.compile_cuda(arch, names=["memory_read_family.cu"])]
    assert {r.kernel.split("<")[0] for r in results} >= {
        "topk_sweep_kernel",
        "topk_select_kernel",
        "topk_gather_kernel",
        "softmax_sweep_kernel",
        "softmax_combine_kernel",
        "softmax_usage_kernel",
    }, _describe(results)
    failed = [r for r in results if R.problems(r) or r.local_instructions]
    assert not failed, _describe(failed)


# --- the checks themselves can fail ---------------------------------------------------------------

_PTXAS_SPILLING = """\
ptxas info    : Compiling entry function 'memory_read_kernel' for 'sm_90a'
ptxas info    : Function properties for memory_read_kernel
    1376 bytes stack frame, 1964 bytes spill stores, 1568 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 32768 bytes smem, 544 bytes cmem[0]
"""


def test_ptxas_report_is_parsed():
    info = R.parse_ptxas(_PTXAS_SPILLING)["memory_read_kernel"]
    assert info == {"stack": 1376, "spill_stores": 1964, "spill_loads": 1568, "registers": 255, "shared": 32768}


def test_checks_flag_spills_low_occupancy_and_missed_tensor_cores():
    spilling = R.Resources(
        "memory_read_kernel",
        "",
        90,
        registers=255,
        spill_stores=8,
        threads=128,
        shared=32768,
        mma="HGMMA",
        half_dot=True,
    )
    assert "spills" in R.problems(spilling)
    assert "<16 warps/SM" in R.problems(spilling)  # 255 registers x 128 threads: 2 blocks, 8 warps
    off_tensor_cores = R.Resources("best_match_kernel", "", 80, registers=96, threads=128, half_dot=True)
    assert R.problems(off_tensor_cores) == ["half dot off tensor cores"]
    clean = R.Resources("best_match_kernel", "", 80, registers=96, threads=128, half_dot=True, mma="HMMA")
    assert R.problems(clean) == []
    assert R.problems(R.Resources("rsp_kernel", "", 80, error="CompilationError: x")) == ["error: CompilationError: x"]
    spilling_family = R.Resources("topk_sweep_kernel", "", 90, registers=255, spill_stores=4, threads=128)
    assert "spills" in R.problems(spilling_family)
    spilling_cuda = R.Resources(
        "topk_sweep_kernel<float, true>", "memory_read_family.cu", 80, registers=64, spill_loads=8, threads=256
    )
    assert R.problems(spilling_cuda) == ["spills"]


def test_occupancy_matches_the_calculator():
    # 128 registers x 128 threads = 16K registers a block: 4 blocks, 16 warps.
    assert R.occupancy(90, 128, 0, 128) == (4, 16)
    # 168 registers round to 168 x 32 = 5376 per warp: 12 warps by registers, 3 blocks of 4 warps.
    assert R.occupancy(80, 168, 0, 128) == (3, 12)
    # Shared memory bound: 100 KB blocks on an A100 (164 KB): one block.
    assert R.occupancy(80, 32, 100 * 1024, 128) == (1, 4)
