"""WhisperPreprocessor (``preprocessor: whisper``): Whisper token ids as ESPnet's training targets.

ESPnet's ``CommonPreprocessor`` turns a transcript into token ids with the tokenizer and
token-id converter of ``token_type``; for the Whisper types its own classes need the
openai-whisper of early 2023 (see :mod:`echo_plugin.text.whisper_tokens`) and fail at
construction with today's. This subclass is ``CommonPreprocessor`` built with the classes of
:mod:`echo_plugin.text.whisper_tokens` in their place (everything else, audio noise and RIR
included, is ESPnet's). A transcript becomes::

    [<|en|>, <|transcribe|>, <|notimestamps|>, ids of " " + transcript]

the start-of-transcript prompt after ``<|startoftranscript|>`` (language and task from
``whisper_language`` / ``whisper_task``), then the text's ids. ESPnet's model adds
``sym_sos: <|startoftranscript|>`` in front of the decoder input and ``sym_eos: <|endoftext|>``
after the target, so the decoder learns the whole sequence Whisper decodes; its beam search is
primed with the same prompt (:mod:`echo_plugin.inference.whisper_decoding`).

``prefix_space: true`` (the default) encodes the transcript after one space, as Whisper writes
its transcripts (" Five."; :class:`~echo_plugin.text.whisper_tokens.WhisperTokenizer` strips it
again when turning tokens into text); ESPnet's own Whisper preprocessing encodes the bare text.

Training and decoding configs name it::

    token_type: whisper_multilingual     # asr.sh --token_type; bpemodel the same
    preprocessor: whisper
    preprocessor_conf: {whisper_language: en, whisper_task: transcribe}

ESPnet looks it up in ``espnet2.tasks.asr.preprocessor_choices``. It is a catalog entry
(``echo_plugin.catalog.ESPNET_CHOICES['preprocessor_choices']``) that :func:`echo_plugin.register`
adds there with the other Echo choices; importing :mod:`echo_plugin.tasks.asr` calls it, as the
training and decoding entry points do.
"""
from __future__ import annotations

from typing import Any, Dict, Union

import numpy as np
from espnet2.train.preprocessor import CommonPreprocessor

from echo_plugin.text.whisper_tokens import MODEL_TYPES, espnet_whisper_text

NAME = "whisper"


class WhisperPreprocessor(CommonPreprocessor):
    """CommonPreprocessor with Whisper tokens on today's openai-whisper (see the module doc).

    Args:
        train: ESPnet's (noise and RIR augmentation in training only).
        prefix_space: encode ``" " + transcript`` (Whisper's form) rather than the bare transcript.
        **kwargs: CommonPreprocessor's; ``token_type`` and ``bpemodel`` must be a Whisper type.
    """

    def __init__(self, train: bool, prefix_space: bool = True, **kwargs: Any) -> None:
        token_type, bpemodel = kwargs.get("token_type"), kwargs.get("bpemodel")
        if token_type not in MODEL_TYPES or bpemodel != token_type:
            raise ValueError(
                f"preprocessor: whisper needs token_type and bpemodel both one of {', '.join(MODEL_TYPES)}; "
                f"got token_type {token_type!r}, bpemodel {bpemodel!r}"
            )
        with espnet_whisper_text(("espnet2.train.preprocessor",)):
            super().__init__(train, **kwargs)
        self.prefix_space = prefix_space

    def _text_process(self, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        text = data.get(self.text_name)
        if self.prefix_space and isinstance(text, str):
            data = {**data, self.text_name: " " + text.strip()}
        return super()._text_process(data)

