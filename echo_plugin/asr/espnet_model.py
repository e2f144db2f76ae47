"""EchoASRModel: ESPnet's CTC/attention ASR model, carrying f0 from the frontend to the encoder.

``model: echo`` in the training YAML. ``encode`` is ESPnet's own
(``ESPnetASRModel.encode``: frontend, SpecAugment, normalize, preencoder,
encoder, postencoder and its output checks; ``asr_inference`` calls it too);
the f0 path adds two hooks into it, active only while ``encode`` runs::

    _extract_feats (ESPnet's frontend step, overridden):
        frontend.extract -> feats (B, T, D), lengths, f0 (B, T) Hz (0 = unvoiced); f0 kept for the encoder
    specaug(feats), normalize(feats)    ESPnet's; f0 untouched; speaker_mvn gets the batch's spk_stats
    encoder(feats, lengths, f0=f0)      a forward pre-hook on the encoder adds f0 to ESPnet's call,
                                        for encoders whose forward has an ``f0`` parameter

(``torch.nn.Module.register_forward_pre_hook``: ESPnet calls
``self.encoder(feats, feats_lengths)`` inside ``encode`` with no way to pass
more, and its ``encode`` is one method, so the hook is what spares copying it.)
A frontend with ``extract(speech, lengths, with_f0, cached, input_norm)``
(:class:`~echo_plugin.nn.capabilities.ExtractsFeatures`: the Echo frontend) gives
f0 in the same pass; with ``normalize: speaker_mvn`` it normalises its raw frame
features (``input_norm``), so ESPnet's normalize step passes the frontend's
output through (``SpeakerMVN.applied_upstream``).

f0 is computed when the encoder takes it, unless the encoder says it does not
read it (``needs_f0`` False, :class:`~echo_plugin.nn.capabilities.ReadsF0`: an
EchoEncoder without pitch-aware rotaries), or when a feature (pitch) needs it
anyway; the encoder then gets it too. The encoder must know the frontend's frame
shift (EchoEncoder: ``frame_shift: hop_length / fs`` seconds).
Any other frontend (e.g. ``default``) gives exactly ESPnet's ``encode``, unless
``model_conf.f0`` asks the model to compute f0 for it (``frontend_pitch.py``).

Training: after ESPnet's ``forward`` the model hands the loss to every submodule
with ``observe_loss`` (:class:`~echo_plugin.nn.capabilities.ObservesLoss`: the
adaptive attention's span refiner) and adds the auxiliary losses of the submodules
with ``take_auxiliary_losses`` (:class:`~echo_plugin.nn.capabilities.AuxiliaryLoss`:
myelinated attention's compute-cost penalty) to the loss it returns, each reported
as ``loss_<name>`` in the stats (ESPnet logs and plots them); the stats' ``loss``
stays ESPnet's (the task loss), and so does what ``observe_loss`` gets.

Features cached at data preparation (``python -m echo_plugin.features.cache``)
reach the frontend through ESPnet's data loader: list them as extra
``--{train,valid}_data_path_and_name_and_type <dir>/<feature>.scp,<feature>,kaldi_ark``
entries with ``--allow_variable_data_keys true``; the batch then holds
``<feature>`` and ``<feature>_lengths``, which :meth:`forward` and
:meth:`collect_feats` pass on. Inference (``encode`` alone) computes them.

Not supported with the Echo frontend or model-computed f0 (a clear error at construction):
a ``preencoder`` other than ESPnet's ``linear`` one (it sits between frontend and encoder, and
any other may change the frame rate f0 is aligned to; the linear projection maps each frame alone,
as over the pretrained Whisper frontend's 512 channels). An Echo encoder's ``frame_shift`` must
be the frontend's hop for model-computed f0 (checked at construction). SpecAugment's time warping moves feature
frames by up to ``time_warp_window`` frames without moving f0; time and
feature masks are harmless. Intermediate CTC works as in ESPnet (the
``ctc`` argument is passed to encoders that condition on it).
"""
from __future__ import annotations

import inspect
import logging
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.preencoder.linear import LinearProjection
from espnet2.layers.global_mvn import GlobalMVN
from espnet2.torch_utils.device_funcs import force_gatherable
from torch import Tensor, nn

from echo_plugin.asr.frontend_pitch import FrontendPitch, frontend_grid
from echo_plugin.asr.normalize.speaker_mvn import STATS_KEY as SPEAKER_STATS_KEY
from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN
from echo_plugin.features.extractor import STORED_FEATURES
from echo_plugin.features.grid import FrameGrid
from echo_plugin.features.pitch import F0Config
from echo_plugin.nn.capabilities import AuxiliaryLoss, ExtractsFeatures, ObservesLoss, modules_with, reads_f0

# ESPnet 202511's encode enters torch.cuda.amp.autocast, deprecated since torch 2.4: a FutureWarning on the
# first encode of any process (202611 uses torch.amp.autocast). Echo's encode is ESPnet's, and users cannot act
# on the warning, so this one is silenced, for that module only.
warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
                        category=FutureWarning, module=r"espnet2\.asr\.espnet_model")

CachedInputs = Dict[str, Tuple[Tensor, Tensor]]


def accepts_kwarg(function: Any, name: str) -> bool:
    """True when ``function`` has a parameter called ``name`` (a ``**kwargs`` catch-all does not count)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    param = params.get(name)
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


M = TypeVar("M", bound=type)


def extend_init_signature(**defaults: Any) -> Callable[[M], M]:
    """Class decorator: the class's ``__init__(*args, <options>, **kwargs)`` forwards to its base's, and
    its signature is declared (``__signature__``, read by ``inspect.signature``) as the base's plus the
    keyword-only ``defaults``. ESPnet fills a model's ``model_conf`` defaults (``--print_config``) from
    that signature; spelling ESPnet's ~30 constructor parameters out here would tie the class to one
    ESPnet release."""
    def declare(cls: M) -> M:
        base = inspect.signature(cls.__mro__[1].__init__)
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value)
                 for name, value in defaults.items()]
        cls.__init__.__signature__ = base.replace(parameters=[*base.parameters.values(), *extra])
        return cls
    return declare


@dataclass
class _Encoding:
    """State of one ``encode`` call, shared by its two hooks: whether to compute f0, and the f0 computed."""

    with_f0: bool
    f0: Optional[Tensor] = None


def keeps_frames(preencoder: Optional[nn.Module]) -> bool:
    """Whether the preencoder leaves the frontend's frames where they are (none, or a per-frame linear map)."""
    return preencoder is None or type(preencoder) is LinearProjection


def check_frame_shift(encoder: Optional[nn.Module], grid: FrameGrid) -> None:
    """An Echo encoder's ``frame_shift`` (pitch phase per frame) must be the hop f0 is computed on."""
    from echo_plugin.asr.encoder.echo_encoder import EchoEncoder

    hop = grid.hop_length / grid.fs
    if isinstance(encoder, EchoEncoder) and abs(encoder.frame_shift - hop) > 1e-9:
        raise ValueError(f"encoder_conf frame_shift {encoder.frame_shift} s is not the frontend's hop {hop} s "
                         "that model_conf f0 is computed on: set frame_shift to it")


@extend_init_signature(f0=None)
class EchoASRModel(ESPnetASRModel):
    """ESPnetASRModel whose ``encode`` passes f0 to the encoder.

    ESPnetASRModel's constructor, plus ``f0`` (``model_conf``): the WORLD f0
    search ``{method, floor, ceil}`` run on the waveform for a frontend that gives
    no f0 (ESPnet's ``default``), see ``frontend_pitch.py``. The Echo frontend
    computes f0 itself (``frontend_conf.f0``).
    """

    def __init__(self, *args: Any, f0: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frontend_extracts = isinstance(self.frontend, ExtractsFeatures)
        self.encoder_takes_f0 = self.encoder is not None and accepts_kwarg(self.encoder.forward, "f0")
        # f0 costs a WORLD analysis: skip it for encoders that say they do not read it (EchoEncoder.needs_f0)
        self.encoder_wants_f0 = self.encoder_takes_f0 and reads_f0(self.encoder, default=True)
        self.pitch: Optional[FrontendPitch] = None
        if f0 is not None:
            if self.frontend_extracts:
                raise ValueError(f"model_conf f0 is for frontends without f0; the {type(self.frontend).__name__} "
                                 "frontend takes frontend_conf f0")
            self.pitch = FrontendPitch(frontend_grid(self.frontend), F0Config(**dict(f0)))
        if reads_f0(self.encoder) and not self.frontend_extracts and self.pitch is None:
            raise ValueError(
                f"the encoder reads f0 (pitch-aware rotary) but the {type(self.frontend).__name__} frontend gives "
                "none: set model_conf f0 (e.g. {method: dio, floor: 60.0, ceil: 300.0}), or use frontend: echo"
            )
        if self.pitch is not None:
            check_frame_shift(self.encoder, self.pitch.grid)
        if (self.frontend_extracts or self.pitch is not None) and not keeps_frames(self.preencoder):
            raise NotImplementedError(
                f"model 'echo' with f0 from the model or the {type(self.frontend).__name__} frontend does not support "
                f"a preencoder ({type(self.preencoder).__name__}): f0 is aligned to the frontend's frames; "
                "use preencoder: null or linear"
            )
        if self.frontend_extracts and isinstance(self.normalize, GlobalMVN):
            logging.warning(
                "normalize: global_mvn after a learned frontend uses statistics of the untrained frontend; "
                "the Echo frontend normalises its inputs itself, so --normalize none is the usual choice"
            )
        self._cached: Optional[CachedInputs] = None
        self._encoding: Optional[_Encoding] = None  # set while encode() runs the f0 path
        if self.encoder_takes_f0:
            self.encoder.register_forward_pre_hook(self._encoder_f0, with_kwargs=True)

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
        """ESPnet's forward; in training the loss goes to the loss observers, and the auxiliary losses
        are added to the loss returned (each also in the stats as ``loss_<name>``; see the module doc)."""
        sources = modules_with(self, AuxiliaryLoss)
        for source in sources:
            source.take_auxiliary_losses()  # left by forward passes outside this one (e.g. encode alone)
        with self._loader_features(kwargs):
            loss, stats, weight = super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        if self.training:
            self._report_loss(loss)
        return self._add_auxiliary_losses(sources, loss, stats), stats, weight

    def _report_loss(self, loss: Tensor) -> None:
        """Hand the training loss to every submodule with ``observe_loss(float)`` (the adaptive
        attention's Q-learning span refiner rewards itself with the loss decrease)."""
        observers = modules_with(self, ObservesLoss)
        if observers:
            value = float(loss.detach())
            for module in observers:
                module.observe_loss(value)

    @staticmethod
    def _add_auxiliary_losses(sources: List[AuxiliaryLoss], loss: Tensor, stats: Dict[str, Tensor]) -> Tensor:
        """loss + every auxiliary loss the sources took during this forward; their sums by name go into
        ``stats`` as ``loss_<name>`` (detached, 1-dim like ESPnet's gathered stats)."""
        totals: Dict[str, Tensor] = {}
        for source in sources:
            for name, value in source.take_auxiliary_losses().items():
                totals[name] = value if name not in totals else totals[name] + value
        for name, value in totals.items():
            key = f"loss_{name}"
            if key in stats:
                raise KeyError(f"auxiliary loss '{name}': the stats already hold '{key}'")
            stats[key] = force_gatherable(value.detach(), loss.device)
            loss = loss + value
        return loss

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
        """ESPnet's frontend step; inside :meth:`encode` it also computes f0 when the encoder wants it
        and keeps it for the encoder call (``_encoder_f0``)."""
        encoding = self._encoding
        feats, feats_lengths, f0 = self._extract_feats_f0(speech, speech_lengths,
                                                          encoding is not None and encoding.with_f0)
        if encoding is not None:
            encoding.f0 = f0
        return feats, feats_lengths

    def _extract_feats_f0(
        self, speech: Tensor, speech_lengths: Tensor, with_f0: bool
    ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """speech (B, N), lengths (B,) -> feats (B, T, D), lengths (B,), f0 (B, T) Hz or None."""
        assert speech_lengths.dim() == 1, speech_lengths.shape
        speech = speech[:, : speech_lengths.max()]  # for data-parallel
        if not self.frontend_extracts:
            feats, feats_lengths = super()._extract_feats(speech, speech_lengths)
            f0 = self.pitch(speech, speech_lengths, feats.shape[1]) if with_f0 and self.pitch is not None else None
            return feats, feats_lengths, f0
        # speaker_mvn with the Echo frontend normalizes its raw frame features, not its fused output
        input_norm = self.normalize.normalize if isinstance(self.normalize, SpeakerMVN) else None
        out = self.frontend.extract(speech, speech_lengths, with_f0=with_f0, cached=self._cached,
                                    input_norm=input_norm)
        return out.feats, out.lengths, out.f0

    def _encoder_f0(self, encoder: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]
                    ) -> Optional[Tuple[Tuple[Any, ...], Dict[str, Any]]]:
        """Forward pre-hook of the encoder: inside :meth:`encode`, add ``f0=`` (what ``_extract_feats``
        kept, on the feats' frames) to ESPnet's encoder call; elsewhere nothing."""
        encoding = self._encoding
        if encoding is None:
            return None
        if encoding.f0 is not None:
            feats = args[0] if args else kwargs["xs_pad"]
            assert encoding.f0.shape == feats.shape[:2], (encoding.f0.shape, feats.shape)
        return args, {**kwargs, "f0": encoding.f0}

    def encode(self, speech: Tensor, speech_lengths: Tensor) -> Tuple[Any, Tensor]:
        """ESPnet's encode, with f0 for encoders that take it (see the module doc; asr_inference calls it)."""
        if not self.frontend_extracts and self.pitch is None:
            return super().encode(speech, speech_lengths)
        in_frontend = self.frontend_extracts and isinstance(self.normalize, SpeakerMVN)  # see _extract_feats_f0
        previous, self._encoding = self._encoding, _Encoding(with_f0=self.encoder_wants_f0)
        try:
            with self.normalize.applied_upstream() if in_frontend else nullcontext():
                return super().encode(speech, speech_lengths)
        finally:
            self._encoding = previous
