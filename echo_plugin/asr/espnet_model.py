"""EchoASRModel: ESPnet's CTC/attention ASR model, carrying f0 from the frontend to the encoder.

``model: echo`` in the training YAML. With a frontend that has
``extract(speech, lengths, with_f0, cached) -> FrontendOutput`` (the Echo
frontend), ``encode`` runs::

    frontend.extract -> feats (B, T, D), lengths, f0 (B, T) Hz (0 = unvoiced)
    specaug(feats), normalize(feats)        f0 untouched; speaker_mvn gets the batch's spk_stats
    encoder(feats, lengths, f0=f0)          only if encoder.forward has an ``f0`` parameter
    postencoder, ESPnet's output checks

f0 is computed when the encoder takes it, unless the encoder says it does not
read it (``needs_f0`` False: an EchoEncoder without pitch-aware rotaries), or
when a feature (pitch) needs it anyway; the encoder then gets it too. The
encoder must know the frontend's frame shift (EchoEncoder: ``frame_shift:
hop_length / fs`` seconds).
Any other frontend (e.g. ``default``) gives exactly ESPnet's ``encode``, unless
``model_conf.f0`` asks the model to compute f0 for it (``frontend_pitch.py``).

Features cached at data preparation (``python -m echo_plugin.features.cache``)
reach the frontend through ESPnet's data loader: list them as extra
``--{train,valid}_data_path_and_name_and_type <dir>/<feature>.scp,<feature>,kaldi_ark``
entries with ``--allow_variable_data_keys true``; the batch then holds
``<feature>`` and ``<feature>_lengths``, which :meth:`forward` and
:meth:`collect_feats` pass on. Inference (``encode`` alone) computes them.

Not supported with the Echo frontend (a clear error at construction):
a ``preencoder`` (it sits between frontend and encoder and may change the
frame rate f0 is aligned to). SpecAugment's time warping moves feature
frames by up to ``time_warp_window`` frames without moving f0; time and
feature masks are harmless. Intermediate CTC works as in ESPnet (the
``ctc`` argument is passed to encoders that condition on it).
"""
from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager, nullcontext
from typing import Any, ContextManager, Dict, Iterator, Mapping, Optional, Tuple

import torch
from espnet2.asr.espnet_model import ESPnetASRModel, autocast_type
from espnet2.layers.global_mvn import GlobalMVN
from torch import Tensor

from echo_plugin.asr.frontend_pitch import FrontendPitch, frontend_grid
from echo_plugin.asr.normalize.speaker_mvn import STATS_KEY as SPEAKER_STATS_KEY
from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN
from echo_plugin.features.extractor import STORED_FEATURES
from echo_plugin.features.pitch import F0Config

CachedInputs = Dict[str, Tuple[Tensor, Tensor]]


def accepts_kwarg(function: Any, name: str) -> bool:
    """True when ``function`` has a parameter called ``name`` (a ``**kwargs`` catch-all does not count)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    param = params.get(name)
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


class EchoASRModel(ESPnetASRModel):
    """ESPnetASRModel whose ``encode`` passes f0 to the encoder.

    ESPnetASRModel's constructor, plus ``f0`` (``model_conf``): the WORLD f0
    search ``{method, floor, ceil}`` run on the waveform for a frontend that gives
    no f0 (ESPnet's ``default``), see ``frontend_pitch.py``. The Echo frontend
    computes f0 itself (``frontend_conf.f0``).
    """

    def __init__(self, *args: Any, f0: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frontend_extracts = callable(getattr(self.frontend, "extract", None))
        self.encoder_takes_f0 = self.encoder is not None and accepts_kwarg(self.encoder.forward, "f0")
        # f0 costs a WORLD analysis: skip it for encoders that say they do not read it (EchoEncoder.needs_f0)
        self.encoder_wants_f0 = self.encoder_takes_f0 and bool(getattr(self.encoder, "needs_f0", True))
        self.pitch: Optional[FrontendPitch] = None
        if f0 is not None:
            if self.frontend_extracts:
                raise ValueError(f"model_conf f0 is for frontends without f0; the {type(self.frontend).__name__} "
                                 "frontend takes frontend_conf f0")
            self.pitch = FrontendPitch(frontend_grid(self.frontend), F0Config(**dict(f0)))
        if getattr(self.encoder, "needs_f0", False) and not self.frontend_extracts and self.pitch is None:
            raise ValueError(
                f"the encoder reads f0 (pitch-aware rotary) but the {type(self.frontend).__name__} frontend gives "
                "none: set model_conf f0 (e.g. {method: dio, floor: 60.0, ceil: 300.0}), or use frontend: echo"
            )
        if (self.frontend_extracts or self.pitch is not None) and self.preencoder is not None:
            raise NotImplementedError(
                f"model 'echo' with f0 from the model or the {type(self.frontend).__name__} frontend does not support "
                f"a preencoder ({type(self.preencoder).__name__}): f0 is aligned to the frontend's frames; "
                "use preencoder: null"
            )
        if self.frontend_extracts and isinstance(self.normalize, GlobalMVN):
            logging.warning(
                "normalize: global_mvn after a learned frontend uses statistics of the untrained frontend; "
                "the Echo frontend normalises its inputs itself, so --normalize none is the usual choice"
            )
        self._cached: Optional[CachedInputs] = None

    @contextmanager
    def _loader_features(self, batch: Mapping[str, Any]) -> Iterator[None]:
        """Make the data loader's cached features (``<name>``, ``<name>_lengths``) and speaker
        statistics (``spk_stats``, for ``normalize: speaker_mvn``) visible to encode()."""
        cached = {
            name: (batch[name], batch[f"{name}_lengths"])
            for name in STORED_FEATURES
            if isinstance(batch.get(name), Tensor) and isinstance(batch.get(f"{name}_lengths"), Tensor)
        }
        self._cached = cached or None
        try:
            with self.speaker_stats(batch.get(SPEAKER_STATS_KEY)):
                yield
        finally:
            self._cached = None

    def speaker_stats(self, stats: Optional[Tensor]) -> ContextManager[None]:
        """Context giving ``normalize: speaker_mvn`` the batch's speaker statistics (B, 2, D)."""
        if isinstance(self.normalize, SpeakerMVN):
            return self.normalize.provide(stats)
        if stats is not None:
            raise ValueError(
                f"the batch holds '{SPEAKER_STATS_KEY}' but normalize is {type(self.normalize).__name__}: "
                "use normalize: speaker_mvn, or leave the speaker statistics out of the data"
            )
        return nullcontext()

    def forward(
        self, speech: Tensor, speech_lengths: Tensor, text: Tensor, text_lengths: Tensor, **kwargs: Any
    ) -> Tuple[Tensor, Dict[str, Tensor], Tensor]:
        with self._loader_features(kwargs):
            loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        if self.training:
            self._report_loss(loss)
        return loss, stats, weight

    def _report_loss(self, loss: Tensor) -> None:
        """Hand the training loss to every submodule with ``observe_loss(float)`` (the adaptive
        attention's Q-learning span refiner rewards itself with the loss decrease)."""
        observers = [m for m in self.modules() if m is not self and callable(getattr(m, "observe_loss", None))]
        if observers:
            value = float(loss.detach())
            for module in observers:
                module.observe_loss(value)

    def collect_feats(
        self,
        speech: Tensor,
        speech_lengths: Tensor,
        text: Optional[Tensor] = None,
        text_lengths: Optional[Tensor] = None,
        **kwargs: Any,
    ) -> Dict[str, Tensor]:
        """The frontend's output feats (fused, D channels): what ``normalize`` would be applied to."""
        with self._loader_features(kwargs):
            feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": feats_lengths}

    def _extract_feats(self, speech: Tensor, speech_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        if not self.frontend_extracts:
            return super()._extract_feats(speech, speech_lengths)
        feats, feats_lengths, _ = self._extract_feats_f0(speech, speech_lengths, with_f0=False)
        return feats, feats_lengths

    def _extract_feats_f0(
        self, speech: Tensor, speech_lengths: Tensor, with_f0: bool
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        assert speech_lengths.dim() == 1, speech_lengths.shape
        speech = speech[:, : speech_lengths.max()]  # for data-parallel
        if not self.frontend_extracts:
            feats, feats_lengths = super()._extract_feats(speech, speech_lengths)
            f0 = self.pitch(speech, speech_lengths, feats.shape[1]) if with_f0 and self.pitch is not None else None
            return feats, feats_lengths, f0
        # speaker_mvn with the Echo frontend normalizes its raw frame features, not its fused output
        input_norm = self.normalize if isinstance(self.normalize, SpeakerMVN) else None
        out = self.frontend.extract(speech, speech_lengths, with_f0=with_f0, cached=self._cached,
                                    input_norm=input_norm)
        return out.feats, out.lengths, out.f0

    def encode(self, speech: Tensor, speech_lengths: Tensor) -> Tuple[Any, Tensor]:
        """Frontend + encoder, as ESPnet's, with f0 for encoders that take it (used by asr_inference too)."""
        if not self.frontend_extracts and self.pitch is None:
            return super().encode(speech, speech_lengths)
        # ESPnet's torch.cuda.amp.autocast, without its deprecation warning
        with torch.autocast("cuda", enabled=self.autocast_frontend, dtype=autocast_type):
            feats, feats_lengths, f0 = self._extract_feats_f0(speech, speech_lengths, self.encoder_wants_f0)
            if self.specaug is not None and self.training:
                feats, feats_lengths = self.specaug(feats, feats_lengths)
            in_frontend = self.frontend_extracts and isinstance(self.normalize, SpeakerMVN)  # see _extract_feats_f0
            if self.normalize is not None and not in_frontend:
                feats, feats_lengths = self.normalize(feats, feats_lengths)
        if f0 is not None:
            assert f0.shape == feats.shape[:2], (f0.shape, feats.shape)

        if self.encoder is None:
            encoder_out, encoder_out_lens = feats, feats_lengths
        else:
            extra: Dict[str, Any] = {}
            if self.encoder_takes_f0:
                extra["f0"] = f0
            if getattr(self.encoder, "interctc_use_conditioning", False) or getattr(self.encoder, "ctc_trim", False):
                extra["ctc"] = self.ctc
            encoder_out, encoder_out_lens, _ = self.encoder(feats, feats_lengths, **extra)

        intermediate_outs = None
        if isinstance(encoder_out, tuple):
            intermediate_outs = encoder_out[1]
            encoder_out = encoder_out[0]

        if self.postencoder is not None:
            encoder_out, encoder_out_lens = self.postencoder(encoder_out, encoder_out_lens)

        assert encoder_out.size(0) == speech.size(0), (encoder_out.size(), speech.size(0))
        if self.encoder is not None and (
            getattr(self.encoder, "selfattention_layer_type", None) != "lf_selfattn" and not self.is_encoder_whisper
        ):
            assert encoder_out.size(-2) <= encoder_out_lens.max(), (encoder_out.size(), encoder_out_lens.max())

        if intermediate_outs is not None:
            return (encoder_out, intermediate_outs), encoder_out_lens
        return encoder_out, encoder_out_lens


def _signature() -> inspect.Signature:
    """ESPnet's constructor signature plus ``f0`` (ESPnet's --print_config and config checks read it)."""
    base = inspect.signature(ESPnetASRModel.__init__)
    f0 = inspect.Parameter("f0", inspect.Parameter.KEYWORD_ONLY, default=None)
    return base.replace(parameters=[*base.parameters.values(), f0])


EchoASRModel.__init__.__signature__ = _signature()  # type: ignore[attr-defined]
