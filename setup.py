"""Build and install swiftcuda.

The Triton kernels in kernels/triton are installed inside the package as swiftcuda.kernels.triton
(never as a top-level "kernels" package).

One compiled extension, ``swiftcuda._C``, is built with ninja by torch's BuildExtension: the C++ CPU
kernels (csrc/, OpenMP) always, and the CUDA kernels (kernels/cuda/*.cu plus csrc/cuda/) when a CUDA
toolkit is found. The build imports torch, so install torch first and build without isolation::

    pip install torch ninja "setuptools>=70.1" wheel
    pip install --no-build-isolation .

(pyproject.toml names the PEP 517 backend; without it, editable installs went through
``setup.py develop``, which setuptools >= 80 turns into an isolated pip run without torch.)
A build that would install no extension stops with an explanation (torch not importable: an
isolated build) unless SWIFTCUDA_NO_EXTENSION=1 asks for a pure-Python install, and a build
without the CUDA kernels says so on stderr (``pip install -v`` shows it; ``swiftcuda info`` and
the first op that falls back say it again at run time).

Compiled objects are kept in build/temp.<platform>-<python>/ (also by editable installs, which
otherwise compile in a fresh temporary folder), so a rebuild compiles only what changed.

Environment:
    SWIFTCUDA_CUDA          "auto" (default): CUDA kernels when a toolkit is found; "1": require them;
                            "0": CPU kernels only.
    SWIFTCUDA_CUDA_ARCHS    compute capabilities to compile for, default "8.0;9.0+PTX" ("+PTX" also
                            embeds PTX for newer GPUs).
    SWIFTCUDA_NO_EXTENSION  "1": build no extension at all (pure Python; ops fall back to reference/triton).
                            At run time the same variable makes swiftcuda ignore a built extension.
    MAX_JOBS                parallel compile jobs (ninja).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

PACKAGES = find_packages(include=["swiftcuda", "swiftcuda.*"]) + ["swiftcuda.kernels", "swiftcuda.kernels.triton"]
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


def _sources(folder: str, suffix: str) -> list[str]:
    """Relative paths of the files ending in ``suffix`` under ``folder``, sorted."""
    found = []
    for root, _, files in os.walk(os.path.join(HERE, folder)):
        found += [os.path.relpath(os.path.join(root, name), HERE) for name in files if name.endswith(suffix)]
    return sorted(found)


def _parse_archs(spec: str) -> tuple[list[str], list[str]]:
    """ "8.0;9.0+PTX" -> (["80", "90"], ["90"]): SASS targets and PTX targets."""
    sass, ptx = [], []
    for item in re.split(r"[;,\s]+", spec.strip()):
        if not item:
            continue
        number = item.removesuffix("+PTX").replace(".", "")
        if not number.isdigit():
            raise ValueError(f"SWIFTCUDA_CUDA_ARCHS: cannot read {item!r} (expected e.g. 8.0 or 9.0+PTX)")
        sass.append(number)
        if item.endswith("+PTX"):
            ptx.append(number)
    return sass, ptx


def _nvcc_version(cuda_home: str) -> str:
    """The toolkit's version ("13.0") from ``nvcc --version``."""
    output = subprocess.run(
        [os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"release (\d+\.\d+)", output)
    return match.group(1) if match else "unknown"


def _has_cuda_headers(root: str) -> bool:
    return os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))


def _locate_cuda_toolkit() -> None:
    """Set CUDA_HOME to a complete toolkit when the environment names none.

    torch guesses the folder above the ``nvcc`` on PATH; where that ``nvcc`` is a wrapper (such as
    /usr/local/bin/nvcc) the guess is /usr/local, which has no CUDA headers, and the build fails.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    for root in [*candidates, "/usr/local/cuda"]:
        if _has_cuda_headers(root):
            os.environ["CUDA_HOME"] = root
            return


def _cuda_build_possible(cuda_home: str | None) -> bool:
    """Whether "auto" should build the CUDA kernels: a toolkit whose major version matches torch's.

    A CPU-only torch, or a toolkit of another major version than torch was built with, cannot
    build CUDA extensions; "auto" then builds the CPU kernels only and says why, instead of failing
    the whole install.
    """
    import torch

    if cuda_home is None:
        return False
    if not _has_cuda_headers(cuda_home):
        print(
            f"swiftcuda: no CUDA headers under {cuda_home}: building the CPU kernels only (set CUDA_HOME)",
            file=sys.stderr,
        )
        return False
    if torch.version.cuda is None:
        print("swiftcuda: this torch has no CUDA support: building the CPU kernels only", file=sys.stderr)
        return False
    toolkit = _nvcc_version(cuda_home)
    if toolkit.split(".")[0] != torch.version.cuda.split(".")[0]:
        print(
            f"swiftcuda: the CUDA toolkit in {cuda_home} is {toolkit} but torch was built with CUDA "
            f"{torch.version.cuda}: building the CPU kernels only (set CUDA_HOME to a matching toolkit)",
            file=sys.stderr,
        )
        return False
    return True


#: setup.py commands that compile or install code (the others write metadata or a source archive).
BINARY_COMMANDS = {"build", "build_ext", "bdist", "bdist_wheel", "bdist_egg", "editable_wheel", "develop", "install"}


def _banner(*lines: str) -> None:
    """Print an unmissable notice on stderr (``pip install -v`` and ``setup.py`` runs show it)."""
    rule = "!" * 78
    print("\n".join(["", rule, *(f"!! {line}" for line in lines), rule, ""]), file=sys.stderr)


def _builds_binaries(argv: list[str]) -> bool:
    """Whether this setup.py run builds or installs code (not only metadata or an sdist)."""
    return any(arg in BINARY_COMMANDS for arg in argv[1:])


def _persistent_build_ext(base: type) -> type:
    """``base`` (torch's BuildExtension) compiling editable installs into the folder that
    ``setup.py build_ext`` uses, build/temp.<platform>-<python>/.

    setuptools' editable installs compile in a new temporary folder each time, so every
    ``pip install -e .`` recompiled everything; the fixed folder lets ninja recompile only what
    changed (it tracks each object's command line, and its headers, torch's included, through
    depfiles, so another torch or other flags recompile).
    """
    import sysconfig

    default_temp = os.path.join(HERE, "build", f"temp.{sysconfig.get_platform()}-{sys.implementation.cache_tag}")

    class PersistentBuildExtension(base):
        def finalize_options(self) -> None:
            super().finalize_options()
            if not os.path.realpath(self.build_temp).startswith(os.path.realpath(HERE) + os.sep):
                self.build_temp = default_temp  # an editable install's throw-away folder

        def run(self) -> None:
            super().run()
            for extension in self.extensions:
                built = self.get_ext_fullpath(extension.name)
                if not os.path.isfile(built):
                    raise RuntimeError(f"swiftcuda: the build finished but {built} is missing")
                print(f"swiftcuda: built {built}", file=sys.stderr)

    return PersistentBuildExtension


def extension_build() -> tuple[list, dict]:
    """The ``swiftcuda._C`` extension and the build_ext command that builds it, or nothing.

    Raises:
        SystemExit: torch is not importable while binaries are being built (an isolated build),
            and SWIFTCUDA_NO_EXTENSION=1 does not ask for an install without the extension.
    """
    if os.environ.get("SWIFTCUDA_NO_EXTENSION") == "1":
        if _builds_binaries(sys.argv):
            _banner(
                "swiftcuda: SWIFTCUDA_NO_EXTENSION=1: installing WITHOUT the compiled C++/CUDA kernels.",
                "The ops run the Triton kernels (GPU) or the plain PyTorch reference (slow).",
            )
        return [], {}
    _locate_cuda_toolkit()
    try:
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as error:
        if not _builds_binaries(sys.argv):
            return [], {}
        _banner(
            f"swiftcuda: torch is not importable in this build environment ({error}),",
            "so the C++/CUDA extension cannot be built. This is an isolated build: install torch",
            "first, then build without isolation:",
            "    pip install torch ninja 'setuptools>=70.1' wheel",
            "    pip install --no-build-isolation .        (or -e . for an editable install)",
            "To install without the compiled kernels on purpose, set SWIFTCUDA_NO_EXTENSION=1.",
        )
        raise SystemExit("swiftcuda: torch is not importable: build with --no-build-isolation (see above)") from None

    mode = os.environ.get("SWIFTCUDA_CUDA", "auto").lower()
    with_cuda = mode in ("1", "on", "true") or (mode == "auto" and _cuda_build_possible(CUDA_HOME))
    if with_cuda and CUDA_HOME is None:
        raise RuntimeError("SWIFTCUDA_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME")
    if not with_cuda and _builds_binaries(sys.argv):
        _banner(
            "swiftcuda: building the extension WITHOUT its CUDA kernels"
            + (" (SWIFTCUDA_CUDA=0)." if mode == "0" else " (no usable CUDA toolkit: see above)."),
            "On a GPU the ops then run the Triton kernels; `swiftcuda info` says what was built.",
            "Set CUDA_HOME to the toolkit matching torch's CUDA and SWIFTCUDA_CUDA=1 to require them.",
        )

    sources = ["csrc/registration.cpp", "csrc/checks.cpp"] + _sources("csrc/cpu", ".cpp")
    # No errno and no FP traps (as torch itself builds): the CPU loops with exp2 and max vectorise.
    # -g0: Python's own build flags add -g, and debug information for ATen's headers doubles the
    # compile time of every file that includes them; the extension is built as release code.
    cxx_flags = ["-O3", "-g0", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unknown-pragmas"]
    nvcc_flags: list[str] = []
    if with_cuda:
        sass, ptx = _parse_archs(os.environ.get("SWIFTCUDA_CUDA_ARCHS", DEFAULT_CUDA_ARCHS))
        sources += _sources("kernels/cuda", ".cu") + _sources("csrc/cuda", ".cpp")
        # Explicit -gencode flags: torch then adds no architecture flags of its own.
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in sass]
        gencode += [f"-gencode=arch=compute_{a},code=compute_{a}" for a in ptx]
        nvcc_flags = ["-O3", "-lineinfo", "-std=c++17", "-DSWIFTCUDA_WITH_CUDA", *gencode]
        cxx_flags += [
            "-DSWIFTCUDA_WITH_CUDA",
            f"-DSWIFTCUDA_CUDA_ARCHS={','.join(sass)}",
            f"-DSWIFTCUDA_PTX_ARCHS={','.join(ptx)}",
            f"-DSWIFTCUDA_CUDA_VERSION={_nvcc_version(CUDA_HOME)}",
        ]
    extension_class = CUDAExtension if with_cuda else CppExtension
    extension = extension_class(
        name="swiftcuda._C",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc"), os.path.join(HERE, "kernels", "cuda")],
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags} if with_cuda else {"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )
    return [extension], {"build_ext": _persistent_build_ext(BuildExtension)}


EXT_MODULES, CMDCLASS = extension_build()

setup(
    name="swiftcuda",
    version="0.1.0",
    description="Real-time video object segmentation (SwiftNet) with fused Triton and CUDA kernels",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),  # noqa: SIM115  (read once at build)
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={"swiftcuda.kernels": "kernels", "swiftcuda.kernels.triton": "kernels/triton"},
    # Shipped data (mask sequences, demo weights) lives under swiftcuda/assets/; the annotation
    # page (HTML, CSS, JavaScript modules) under swiftcuda/annotate/static/.
    package_data={"swiftcuda": ["assets/**/*"], "swiftcuda.annotate": ["static/*"]},
    ext_modules=EXT_MODULES,
    cmdclass=CMDCLASS,
    install_requires=[
        "torch>=2.6",
        "numpy",
        "opencv-python-headless",
        "Pillow",
        "tqdm",
        "triton; platform_system == 'Linux' and platform_machine == 'x86_64'",
    ],
    extras_require={
        # ruff and clang-format: the lint and format checks of scripts/lint.sh (CI runs it). httpx2:
        # Starlette's test client; playwright: the annotation page's browser test (it drives the
        # system's Chromium, /usr/bin/chromium; `playwright install` is never needed);
        # pytest-xdist: scripts/test.sh runs most tests on every core.
        "test": ["pytest", "pytest-xdist", "ruff", "clang-format", "httpx2", "playwright"],
        # Optional pieces, each its own extra; CI installs and tests them all.
        "ray": ["ray>=2.9"],
        # onnxscript: torch.onnx.export(dynamo=True) translates to ONNX with it.
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript"],
        # swiftcuda annotate: a small ASGI application (Starlette) on an ASGI server (uvicorn).
        "gui": ["starlette>=1.0", "uvicorn>=0.30"],
    },
    entry_points={"console_scripts": ["swiftcuda = swiftcuda.cli:main"]},
)
