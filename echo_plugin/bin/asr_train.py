"""ESPnet's ASR training with the Echo task (:class:`echo_plugin.tasks.asr.EchoASRTask`).

What ``espnet2.bin.asr_train`` does, with EchoASRTask in place of ASRTask: importing
the task registers the Echo classes, so processes spawned for multi-GPU training
and torchrun ranks (which import this module or the task's) see them too.
Checkpoints are written atomically (:func:`echo_plugin.espnet_patches.use_atomic_torch_save`).

    python -m echo_plugin.bin.asr_train --config conf/tuning/train_asr_echo.yaml ...
"""
from __future__ import annotations

from typing import List, Optional

from echo_plugin import espnet_patches
from echo_plugin.tasks.asr import EchoASRTask

espnet_patches.use_atomic_torch_save()  # a killed training never leaves a truncated checkpoint


def get_parser():
    """ESPnet's ASR training parser (with the Echo choices)."""
    return EchoASRTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    """ASR training (``espnet2.bin.asr_train.main``) with EchoASRTask."""
    EchoASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
