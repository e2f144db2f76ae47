"""Echo: an ESPnet2 plugin with pitch-aware rotary attention models for ASR."""
from setuptools import find_packages, setup

# Versions that resolve together on Python 3.11 (see README "Install").
# espnet 202511 pins setuptools<74 while torch>=2.13 needs setuptools>=77,
# so torch stays at 2.12.1 with the torchaudio that runs beside it.
INSTALL_REQUIRES = [
    "espnet==202511",
    "torch==2.12.1",
    "torchaudio==2.11.0",
    "sentencepiece==0.2.0",
    "kaldiio==2.18.1",
    "jiwer==4.0.0",
    "humanfriendly==10.0",
    "PyYAML==6.0.3",
    "soundfile==0.14.0",
    "pyworld==0.3.5",
    "tensorboard==2.21.0",
    "matplotlib==3.11.2",
    "numpy==2.4.6",
]

setup(
    name="echo_plugin",
    version="0.1.0",
    description="Echo attention models for ESPnet2 ASR",
    packages=find_packages(include=["echo_plugin", "echo_plugin.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest==9.2.0"]},
    entry_points={
        "console_scripts": [
            "echo-transcribe=echo_plugin.bin.transcribe:main",
            "echo-registries=echo_plugin.bin.list_registries:main",
        ]
    },
)
