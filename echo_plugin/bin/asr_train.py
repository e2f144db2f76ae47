"""ESPnet's ASR training entry point with Echo components registered.

Checkpoints are written atomically. Registration runs at import, so processes spawned for multi-GPU training and
torchrun ranks (which import this module) see the Echo classes too.

    python -m echo_plugin.bin.asr_train --config conf/tuning/train_asr_echo.yaml ...
"""
from echo_plugin import register
from echo_plugin.train import atomic_save

register()
atomic_save.install()  # a killed training never leaves a truncated checkpoint

from espnet2.bin.asr_train import main  # noqa: E402  (after register on purpose)

if __name__ == "__main__":
    main()
