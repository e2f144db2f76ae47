"""EchoASRTask: ESPnet's ASRTask with the Echo components registered and strict weight loading.

Importing this module registers the Echo classes in ESPnet's ASR choice tables
(:func:`echo_plugin.register`, ``preprocessor: whisper`` among them:
:mod:`echo_plugin.text.whisper_preprocessor`, Whisper token ids as training targets), so a
process that unpickles the task (ESPnet's multi-GPU launcher spawns workers with
``cls.main_worker``) has them too. A Whisper token type with another preprocessor is refused
by name (ESPnet's own Whisper tokenizer fails on today's openai-whisper).

ESPnet's ``build_model_from_file`` loads weights with ``strict=False``: a renamed
or missing parameter silently keeps its random initial value. Here the model is
built from the config without weights, then the weights load strictly
(:func:`echo_plugin.inference.strict_load.load_strict`: an error naming every
missing and unexpected key). A frontend with a pretrained checkpoint of its own
(``pretrained_whisper``) is built without reading it, its weights being in the
model file (:func:`~echo_plugin.asr.frontend.pretrained_whisper.weights_from_model_file`).
Everything else is ASRTask's: ``EchoASRTask.main`` trains as ``espnet2.bin.asr_train`` does (its trainer
also writes each epoch's training CPU seconds), and a distributed worker leaves its process group before it exits.

ESPnet's ``Speech2Text`` builds its model with ``ASRTask.build_model_from_file`` by
name and takes neither a task nor a model; Echo's subclass
(:class:`echo_plugin.inference.speaker_speech2text.EchoSpeech2Text`) has it build
the model without weights and loads them with :meth:`EchoASRTask.load_weights`.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Callable, ContextManager, Optional, Tuple, Union

import torch
from espnet2.tasks.asr import ASRTask
from espnet2.train.trainer import Trainer

from echo_plugin import register
from echo_plugin.asr.frontend.pretrained_whisper import weights_from_model_file
from echo_plugin.inference.strict_load import load_strict
from echo_plugin.text import whisper_preprocessor
from echo_plugin.text.whisper_tokens import MODEL_TYPES as WHISPER_TOKEN_TYPES
from echo_plugin.train.process_group import finish_worker
from echo_plugin.train.trainer import EchoTrainer

register()

PathLike = Union[Path, str]


class EchoASRTask(ASRTask):
    """ASRTask whose ``build_model_from_file`` loads the weights strictly (see the module doc) and whose
    trainer records each epoch's training CPU seconds (:class:`~echo_plugin.train.trainer.EchoTrainer`)."""

    trainer = EchoTrainer

    @classmethod
    def build_model_from_file(
        cls,
        config_file: Optional[PathLike] = None,
        model_file: Optional[PathLike] = None,
        device: str = "cpu",
    ) -> Tuple[torch.nn.Module, argparse.Namespace]:
        """ASRTask's, with the weights of ``model_file`` loaded strictly (WeightMismatchError naming the keys)."""
        if config_file is None and model_file is not None:
            config_file = Path(model_file).parent / "config.yaml"  # where ESPnet looks for it
        with cls.weights_follow(model_file):
            model, args = super().build_model_from_file(config_file, None, device)
        if model_file is not None:
            cls.load_weights(model, model_file, device)
        return model, args

    @classmethod
    def main_worker(cls, args: argparse.Namespace) -> None:
        """ASRTask's training worker; a distributed one then leaves its process group with every rank and
        exits (:func:`~echo_plugin.train.process_group.finish_worker`: gloo otherwise aborts an exit now and then).
        With ``--use_deepspeed`` ESPnet accepts no trainer but its own, so that run trains without the CPU
        accounting of :class:`EchoTrainer`."""
        if getattr(args, "use_deepspeed", False):
            cls.trainer = Trainer  # AbsTask.main_worker refuses DeepSpeed with any other trainer
        super().main_worker(args)
        finish_worker()

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable[..., dict]]:
        """ASRTask's; a Whisper token type must come with ``preprocessor: whisper``."""
        preprocessor = getattr(args, "preprocessor", None) or "default"
        whisper_tokens = args.use_preprocessor and args.token_type in WHISPER_TOKEN_TYPES
        if whisper_tokens and preprocessor != whisper_preprocessor.NAME:
            raise ValueError(f"token_type {args.token_type} needs preprocessor: {whisper_preprocessor.NAME} "
                             f"(got {preprocessor}; ESPnet's own Whisper tokenizer needs the openai-whisper of 2023)")
        return super().build_preprocess_fn(args, train)

    @staticmethod
    def weights_follow(model_file: Optional[PathLike]) -> ContextManager[None]:
        """Context for building a model whose weights ``model_file`` will give: pretrained frontends
        skip their own checkpoint. No effect for ``model_file`` None."""
        return weights_from_model_file() if model_file is not None else contextlib.nullcontext()

    @staticmethod
    def load_weights(model: torch.nn.Module, model_file: PathLike, device: str = "cpu") -> None:
        """Load ``model_file`` into ``model`` strictly, mapped to ``device`` (``mps``: through the CPU)."""
        load_strict(model, model_file, "cpu" if device == "mps" else device)
