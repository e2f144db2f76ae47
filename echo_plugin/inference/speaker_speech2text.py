"""ESPnet's Speech2Text taking the utterance's speaker statistics (``normalize: speaker_mvn``).

ESPnet's decoding loop calls ``speech2text(**batch)`` with every data key of the
batch; its Speech2Text takes ``speech`` alone. :class:`EchoSpeech2Text` also takes
``spk_stats`` (2, D) and hands it to the model's SpeakerMVN for that call.
:func:`install` makes ``espnet2.bin.asr_inference`` build this class.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Optional, Union

import numpy as np
import torch
from espnet2.bin import asr_inference
from espnet2.bin.asr_inference import Speech2Text

from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN


class EchoSpeech2Text(Speech2Text):
    """Speech2Text whose call takes optional speaker statistics ``spk_stats`` (2, D) or (1, 2, D)."""

    def __call__(  # type: ignore[override]
        self, speech: Union[torch.Tensor, np.ndarray], spk_stats: Optional[Union[torch.Tensor, np.ndarray]] = None
    ) -> Any:
        normalize = getattr(self.asr_model, "normalize", None)
        if spk_stats is None:
            context = nullcontext()
        elif isinstance(normalize, SpeakerMVN):
            context = normalize.provide(torch.as_tensor(np.asarray(spk_stats), dtype=torch.float32))
        else:
            raise ValueError(
                f"speaker statistics given, but the model's normalize is {type(normalize).__name__}, not speaker_mvn"
            )
        with context:
            return super().__call__(speech)


def install() -> None:
    """Make ``espnet2.bin.asr_inference``'s decoding loop build EchoSpeech2Text (idempotent)."""
    asr_inference.Speech2Text = EchoSpeech2Text
