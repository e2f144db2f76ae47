"""The plugin's runtime patches: the two places where ESPnet or torch offer no way in but a name.

Everything else joins ESPnet by subclassing (:class:`echo_plugin.tasks.asr.EchoASRTask`,
:class:`echo_plugin.asr.espnet_model.EchoASRModel`,
:class:`echo_plugin.inference.speaker_speech2text.EchoSpeech2Text`) or through
ESPnet's choice tables (:func:`echo_plugin.register`). Only entry points call these;
importing ``echo_plugin`` patches nothing.

* :func:`use_echo_speech2text` (``python -m echo_plugin.bin.asr_inference``): ESPnet's
  decoding CLI, ``espnet2.bin.asr_inference.inference``, builds its decoder with
  ``Speech2Text.from_pretrained``, which returns ``Speech2Text(**kwargs)``: both look
  the class up by its module-global name, and no option names another. Rebinding
  that name to EchoSpeech2Text (strict weights, speaker statistics per utterance) is
  the only way to have ESPnet's loop decode with it short of copying the loop.
* :func:`use_atomic_torch_save` (``python -m echo_plugin.bin.asr_train``): ESPnet's
  trainer writes ``checkpoint.pth`` and ``*epoch.pth`` with ``torch.save`` called
  inside its ``Trainer.run`` and ``AbsTask.main_worker`` (no method to override per
  file); :func:`echo_plugin.train.atomic_save.atomic_save` in its place makes a
  killed training leave the old checkpoint or the new one, never a truncated file.

Both are idempotent.
"""
from __future__ import annotations


def use_echo_speech2text() -> None:
    """Make ``espnet2.bin.asr_inference`` (its ``inference`` loop and ``Speech2Text.from_pretrained``)
    build :class:`~echo_plugin.inference.speaker_speech2text.EchoSpeech2Text`."""
    from espnet2.bin import asr_inference

    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

    asr_inference.Speech2Text = EchoSpeech2Text


def use_atomic_torch_save() -> None:
    """Route every ``torch.save`` of the process through :func:`echo_plugin.train.atomic_save.atomic_save`."""
    import torch

    from echo_plugin.train import atomic_save

    torch.save = atomic_save.atomic_save
