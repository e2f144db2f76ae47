"""EchoSpeech2Text: ESPnet's Speech2Text with strict weight loading and the utterance's speaker statistics.

* Strict loading. ESPnet's Speech2Text builds its model with
  ``ASRTask.build_model_from_file`` by name (lenient: a renamed parameter keeps its
  random value) and takes neither a task nor a ready model. EchoSpeech2Text lets it
  build the model from the config without weights (pretrained frontends skipping
  their own checkpoint), then loads the weights strictly
  (:meth:`echo_plugin.tasks.asr.EchoASRTask.load_weights`) into that model, which the
  beam search's scorers already hold. ``hugging_face_decoder``, which consumes the
  weights while Speech2Text is built, is refused; ESPnet's quantization options
  (``quantize_asr_model``, ``quantize_modules``, ``quantize_dtype``) are applied after
  the weights are loaded (:mod:`echo_plugin.inference.quantize`).
* Speaker statistics. ESPnet's decoding loop calls ``speech2text(**batch)`` with
  every data key of the batch; its Speech2Text takes ``speech`` alone. EchoSpeech2Text
  also takes ``spk_stats`` (2, D) and hands it to the model's SpeakerMVN for that call.

* Whisper token types (``token_type: whisper_multilingual``): the tokenizer, the
  start-of-transcript prompt and Whisper's token suppression in the beam search
  (:mod:`echo_plugin.inference.whisper_decoding`).

ESPnet's decoding CLI (``espnet2.bin.asr_inference``) builds its Speech2Text by name:
:func:`echo_plugin.espnet_patches.use_echo_speech2text` makes it build this class.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from espnet2.bin.asr_inference import Speech2Text

from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN
from echo_plugin.inference import whisper_decoding
from echo_plugin.inference.forced_eos import drop_forced_eos
from echo_plugin.inference.quantize import QUANTIZE_OPTIONS, quantize_model

WEIGHT_CONSUMING_OPTIONS = ("hugging_face_decoder",)
"""Speech2Text options that use the weights while it is built, before they could be loaded strictly."""


class EchoSpeech2Text(Speech2Text):
    """Speech2Text with strictly loaded weights, whose call takes optional speaker statistics
    ``spk_stats`` (2, D) or (1, 2, D). Arguments: Speech2Text's."""

    def __init__(
        self,
        asr_train_config: Union[Path, str, None] = None,
        asr_model_file: Union[Path, str, None] = None,
        device: str = "cpu",
        **kwargs: Any,
    ) -> None:
        from echo_plugin.tasks.asr import EchoASRTask

        quantize = {name: kwargs.pop(name) for name in QUANTIZE_OPTIONS if name in kwargs}
        refused = [name for name in WEIGHT_CONSUMING_OPTIONS if kwargs.get(name)]
        if refused:
            raise ValueError(f"{', '.join(refused)}: not with Echo's strict weight loading (Speech2Text uses the "
                             "weights while it is built, before they are loaded)")
        if kwargs.get("enh_s2t_task"):
            raise ValueError("enh_s2t_task: EchoSpeech2Text decodes ASR models (ASRTask)")
        if asr_train_config is None and asr_model_file is not None:
            asr_train_config = Path(asr_model_file).parent / "config.yaml"  # where ESPnet looks for it
        with EchoASRTask.weights_follow(asr_model_file), whisper_decoding.building():
            super().__init__(asr_train_config=asr_train_config, asr_model_file=None, device=device, **kwargs)
        whisper_decoding.add_suppression(self)
        if asr_model_file is not None:
            EchoASRTask.load_weights(self.asr_model, asr_model_file, device)
        if quantize.get("quantize_asr_model"):
            quantize_model(self.asr_model, quantize.get("quantize_modules", ["Linear"]),
                           quantize.get("quantize_dtype", "qint8"))

    def _decode_single_sample(self, enc: torch.Tensor) -> list:
        """ESPnet's beam search on one encoder output (T, D), without the end token its last step may
        double (:mod:`echo_plugin.inference.forced_eos`); Whisper token types get their text rebuilt."""
        results = drop_forced_eos(self, super()._decode_single_sample(enc))
        if whisper_decoding.uses_whisper_tokens(self):
            results = whisper_decoding.whisper_results(self, results)
        return results

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
