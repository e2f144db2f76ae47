"""ESPnet's ``whisper_en`` / ``whisper_multilingual`` token types on today's openai-whisper.

ESPnet 202511's :class:`espnet2.text.whisper_tokenizer.OpenAIWhisperTokenizer`,
:class:`espnet2.text.whisper_token_id_converter.OpenAIWhisperTokenIDConverter` and
``espnet2/bin/whisper_export_vocabulary.py`` reach into ``whisper_tokenizer.tokenizer``, the
Hugging Face GPT-2 tokenizer that openai-whisper held until release 20230308; since 20230314
openai-whisper encodes with tiktoken and that attribute is gone (``AttributeError: 'Tokenizer'
object has no attribute 'tokenizer'``, espnet/espnet#5792). The classes here give the same
interface, the same token strings and the same ids on the tiktoken tokenizer:

- token strings are those the Hugging Face tokenizer gave: each token's bytes through GPT-2's
  byte-to-unicode table (a leading space is ``Ġ``), special tokens by name (``<|en|>``);
- :func:`token_list` is ESPnet's exported vocabulary (``whisper_export_vocabulary.py``: those
  strings with ``Ġ`` written as a space), one entry per id, 51865 for ``whisper_multilingual``;
- :class:`WhisperTokenIDConverter` skips special tokens in ``ids2tokens`` and prefixes the
  start-of-transcript prompt's language, task and no-timestamps tokens in ``tokens2ids``, as ESPnet's;
- :class:`WhisperTokenizer` turns text into token strings and back; ``tokens2text`` strips the
  leading space of Whisper's text, as openai-whisper's ``DecodingResult.text``.

Added-token files (ESPnet's ``prompt_token_file`` / ``added_tokens_txt``) are not supported.
:func:`espnet_whisper_text` makes ESPnet's inference and preprocessing build these classes.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
from espnet2.text.abs_tokenizer import AbsTokenizer

MODEL_TYPES = ("whisper_en", "whisper_multilingual")


@lru_cache(maxsize=1)
def byte_chars() -> Dict[int, str]:
    """GPT-2's byte -> printable character table (the Hugging Face byte-level BPE alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def char_bytes() -> Dict[str, int]:
    return {char: byte for byte, char in byte_chars().items()}


def whisper_tokenizer(model_type: str, language: Optional[str] = "en", task: str = "transcribe") -> Any:
    """openai-whisper's tokenizer for ESPnet's ``model_type``, ``language`` a code (``en``, ``az``) or name."""
    import whisper.tokenizer

    if model_type not in MODEL_TYPES:
        raise ValueError(f"Whisper token type {model_type!r}: one of {', '.join(MODEL_TYPES)}")
    if task not in ("transcribe", "translate"):
        raise ValueError(f"Whisper task {task!r}: transcribe or translate")
    if model_type == "whisper_en":
        return whisper.tokenizer.get_tokenizer(False)
    code = (language or "en").lower()
    code = "en" if code == "noinfo" else code  # ESPnet's name for no language information: English
    code = whisper.tokenizer.TO_LANGUAGE_CODE.get(code, code)
    if code not in whisper.tokenizer.LANGUAGES:
        raise ValueError(f"Whisper language {language!r}: not one of Whisper's languages")
    return whisper.tokenizer.get_tokenizer(True, num_languages=99, language=code, task=task)


class _Strings:
    """Token id <-> ESPnet token string for one openai-whisper tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        encoding = tokenizer.encoding
        self.special = {token_id: name for name, token_id in encoding._special_tokens.items()}
        self.first_special = min(self.special)
        self.n_vocab = encoding.n_vocab
        self.encoding = encoding
        chars = byte_chars()
        self._strings = [
            self.special[i] if i in self.special else "".join(chars[b] for b in encoding.decode_single_token_bytes(i))
            for i in range(self.n_vocab)
        ]
        self._ids = {s: i for i, s in enumerate(self._strings)}

    def string(self, token_id: int) -> str:
        return self._strings[token_id]

    def id(self, string: str) -> int:
        try:
            return self._ids[string]
        except KeyError:
            raise KeyError(f"{string!r} is not a Whisper token") from None


@lru_cache(maxsize=4)
def _strings(model_type: str, language: Optional[str], task: str) -> _Strings:
    return _Strings(whisper_tokenizer(model_type, language, task))


def token_list(model_type: str = "whisper_multilingual", language: Optional[str] = "en",
               task: str = "transcribe") -> List[str]:
    """ESPnet's exported Whisper vocabulary: per id its token string, ``Ġ`` written as a space."""
    strings = _strings(model_type, language, task)
    return [strings.string(i).replace("Ġ", " ") for i in range(strings.n_vocab)]


class PromptTokenizer:
    """openai-whisper's tokenizer plus the two Hugging Face calls ESPnet's ``Speech2Text`` makes on its
    ``.tokenizer`` when a decoding config rewrites the start-of-transcript prompt (``lang_prompt_token:
    "<|az|> <|transcribe|>"``, ``nlp_prompt_token``, ``lid_prompt``): ``convert_ids_to_tokens`` and
    ``convert_tokens_to_ids`` over this module's token strings. Every other attribute is openai-whisper's."""

    def __init__(self, whisper: Any, strings: _Strings) -> None:
        self.whisper = whisper
        self.strings = strings
        self.tokenizer = self  # ESPnet reaches the Hugging Face calls as converter.tokenizer.tokenizer

    def __getattr__(self, name: str) -> Any:
        if name in ("whisper", "strings", "tokenizer"):  # not set yet (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.whisper, name)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> List[str]:
        return [self.strings.string(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> List[int]:
        """Ids of token strings; an unknown one (a misspelt ``<|az|>``) is a KeyError naming it."""
        return [self.strings.id(t) for t in tokens]


class WhisperTokenIDConverter:
    """ESPnet's ``OpenAIWhisperTokenIDConverter`` on tiktoken (see the module docstring).

    ``tokenizer`` is openai-whisper's (``sot_sequence_including_notimestamps`` is the prompt), with the
    calls ESPnet makes to change the prompt from a decoding config (:class:`PromptTokenizer`).
    """

    def __init__(self, model_type: str, language: Optional[str] = "en", task: str = "transcribe",
                 added_tokens_txt: Optional[str] = None, sot: bool = False,
                 speaker_change_symbol: str = "<sc>") -> None:
        if added_tokens_txt is not None or sot:
            raise ValueError("Whisper tokens: added tokens (prompt_token_file) and speaker-change symbols are not "
                             "supported on tiktoken-based openai-whisper")
        self.model_type = model_type
        self._strings = _strings(model_type, language, task)
        self.tokenizer = PromptTokenizer(whisper_tokenizer(model_type, language, task), self._strings)

    def get_num_vocabulary_size(self) -> int:
        return self._strings.n_vocab

    def ids2tokens(self, integers: Union[np.ndarray, Iterable[int]]) -> List[str]:
        """Token strings of the ids, special tokens (prompt, end of text, timestamps) left out."""
        ids = [int(i) for i in integers]
        return [self._strings.string(i) for i in ids if i < self._strings.first_special]

    def tokens2ids(self, tokens: Iterable[str]) -> List[int]:
        """The prompt's language, task and no-timestamps ids, then the tokens' ids (ESPnet's training targets)."""
        return list(self.tokenizer.sot_sequence_including_notimestamps[1:]) + [self._strings.id(t) for t in tokens]


class WhisperTokenizer(AbsTokenizer):
    """ESPnet's ``OpenAIWhisperTokenizer`` on tiktoken: text <-> token strings (see the module docstring)."""

    def __init__(self, model_type: str, language: str = "en", task: str = "transcribe", sot: bool = False,
                 speaker_change_symbol: str = "<sc>", added_tokens_txt: Optional[str] = None) -> None:
        if added_tokens_txt is not None or sot:
            raise ValueError("Whisper tokens: added tokens (non_linguistic_symbols) and speaker-change symbols are "
                             "not supported on tiktoken-based openai-whisper")
        self.model = model_type
        self.language = language
        self.task = task
        self._strings = _strings(model_type, language, task)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(model_type={self.model}, language={self.language})"

    def text2tokens(self, line: str) -> List[str]:
        return [self._strings.string(i) for i in self._strings.encoding.encode_ordinary(line)]

    def tokens2text(self, tokens: Iterable[str]) -> str:
        """The text of the tokens (bytes decoded as UTF-8), stripped as Whisper's transcripts are."""
        table = char_bytes()
        data = bytearray()
        for token in tokens:
            if token in self._strings.special.values():
                continue
            data.extend(table[c] for c in token)
        return data.decode("utf-8", errors="replace").strip()


def build_whisper_tokenizer(original: Any) -> Any:
    """``espnet2.text.build_tokenizer.build_tokenizer`` with Whisper token types built here."""

    def build_tokenizer(token_type: str, *args: Any, **kwargs: Any) -> AbsTokenizer:
        if "whisper" in token_type:  # ESPnet's test; the model type is the bpemodel option
            return WhisperTokenizer(
                kwargs.get("bpemodel") or token_type,
                language=kwargs.get("whisper_language") or "en",
                task=kwargs.get("whisper_task") or "transcribe",
                added_tokens_txt=kwargs.get("non_linguistic_symbols"),
            )
        return original(token_type, *args, **kwargs)

    return build_tokenizer


@contextlib.contextmanager
def espnet_whisper_text(modules: Sequence[str] = ("espnet2.bin.asr_inference", "espnet2.train.preprocessor")
                        ) -> Iterator[None]:
    """Within the block, ESPnet's ``modules`` build the Whisper tokenizer and converter of this module.

    ESPnet picks them by token type inside ``Speech2Text`` and ``CommonPreprocessor``, from names
    bound in those modules (``build_tokenizer``, ``OpenAIWhisperTokenIDConverter``); they are
    rebound for the block and restored after. Every other token type is ESPnet's own.
    """
    import importlib

    saved = []
    try:
        for name in modules:
            module = importlib.import_module(name)
            for attr, value in (("build_tokenizer", build_whisper_tokenizer(module.build_tokenizer)),
                                ("OpenAIWhisperTokenIDConverter", WhisperTokenIDConverter)):
                if hasattr(module, attr):
                    saved.append((module, attr, getattr(module, attr)))
                    setattr(module, attr, value)
        yield
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)
