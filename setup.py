"""Build and install swiftcuda.

The Triton kernels in kernels/triton are installed inside the package as swiftcuda.kernels.triton
(never as a top-level "kernels" package).
"""

from setuptools import find_packages, setup

PACKAGES = find_packages(include=["swiftcuda", "swiftcuda.*"]) + ["swiftcuda.kernels", "swiftcuda.kernels.triton"]

setup(
    name="swiftcuda",
    version="0.1.0",
    description="Real-time video object segmentation (SwiftNet) with fused Triton and CUDA kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={"swiftcuda.kernels": "kernels", "swiftcuda.kernels.triton": "kernels/triton"},
    # Shipped data (mask sequences, demo weights) lives under swiftcuda/assets/.
    package_data={"swiftcuda": ["assets/**/*"]},
    install_requires=[
        "torch>=2.6",
        "torchvision",
        "numpy",
        "opencv-python-headless",
        "Pillow",
        "tqdm",
        "triton; platform_system == 'Linux' and platform_machine == 'x86_64'",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["swiftcuda = swiftcuda.cli:main"]},
)
