"""CTranslate2 ``model.bin`` (the file faster-whisper runs): a reader, and Whisper's names in openai-whisper's layout.

Binary layout (CTranslate2 binary version 6, the one its converters write; little-endian,
no padding anywhere)::

    u32 binary_version                       (6)
    str spec_name                            e.g. "WhisperSpec"
    u32 spec_revision                        (WhisperSpec: 3)
    u32 n_variables
    n_variables times:
        str name                             scope path, e.g. "encoder/layer_0/ffn/linear_0/weight"
        u8  rank
        rank times u32 dim                   row-major shape (rank 0: a scalar)
        u8  dtype                            0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16
        u32 n_bytes                          = prod(dims) * itemsize
        n_bytes of data
    u32 n_aliases
    n_aliases times: str alias, str target   (a variable stored once under the first name in
                                              sorted order, e.g. the tied output projection
                                              decoder/projection/weight -> decoder/embeddings/weight)

    str = u16 n (byte length including a terminating NUL), then n bytes (UTF-8 text + NUL)

Variables are written in sorted name order. Quantized models store ``<x>/weight`` as int8
(or int16) with ``<x>/weight_scale`` (float32, per output row for int8, a scalar for
int16); the float value is ``weight / weight_scale``.

Whisper in CTranslate2 (``WhisperSpec``: a ``WhisperEncoderSpec`` and a pre-norm GELU
``TransformerDecoderSpec``) against openai-whisper's ``Whisper`` names (``i`` a layer)::

    encoder/conv1/{weight,bias}, encoder/conv2/*         encoder.conv1.*, encoder.conv2.*
    encoder/position_encodings/encodings                 encoder.positional_embedding
    encoder/layer_norm/{gamma,beta}                      encoder.ln_post.{weight,bias}
    {en,de}coder/layer_i/self_attention/layer_norm       *.blocks.i.attn_ln
    {en,de}coder/layer_i/self_attention/linear_0         *.blocks.i.attn.{query,key,value} fused by rows
                                                         [q; k; v]; the key rows' bias must be 0
    {en,de}coder/layer_i/self_attention/linear_1         *.blocks.i.attn.out
    decoder/layer_i/attention/layer_norm                 decoder.blocks.i.cross_attn_ln
    decoder/layer_i/attention/linear_0                   decoder.blocks.i.cross_attn.query
    decoder/layer_i/attention/linear_1                   decoder.blocks.i.cross_attn.{key,value} fused
                                                         [k; v]; the key rows' bias must be 0
    decoder/layer_i/attention/linear_2                   decoder.blocks.i.cross_attn.out
    {en,de}coder/layer_i/ffn/layer_norm                  *.blocks.i.mlp_ln
    {en,de}coder/layer_i/ffn/linear_{0,1}                *.blocks.i.mlp.{0,2}
    decoder/embeddings/weight                            decoder.token_embedding.weight
    decoder/projection/weight                            (tied: must be the embeddings, alias or equal)
    decoder/position_encodings/encodings                 decoder.positional_embedding
    decoder/layer_norm/{gamma,beta}                      decoder.ln.{weight,bias}
    {en,de}coder/num_heads                               dims n_audio_head / n_text_head
    decoder/{activation,pre_norm,scale_embeddings,alibi,start_from_zero_embedding}
                                                         checked: GELU (3), 1, 0, 0, 0
    decoder/{alignment_heads,alignment_layer}            word-timestamp settings: read, not used

Everything else is refused by name, as is any missing variable.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from echo_plugin.asr.warm_start import WarmStartError, fail_on_mismatches

BINARY_VERSION = 6
DTYPES: Tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
"""dtype id -> name (CTranslate2's DataType order)."""
GELU = 3
"""CTranslate2's Activation.GELU (erf GELU, as Whisper)."""


class CTranslate2Error(WarmStartError):
    """A CTranslate2 model file that cannot be read, or does not hold a Whisper model."""


@dataclass
class CTranslate2Model:
    """The contents of a ``model.bin``: variables by name (numpy; bfloat16 widened to float32) and aliases."""

    spec: str
    revision: int
    variables: Dict[str, np.ndarray] = field(default_factory=dict)
    aliases: Dict[str, str] = field(default_factory=dict)
    dtypes: Dict[str, str] = field(default_factory=dict)
    """The stored dtype name of each variable (``bfloat16`` although the array is float32)."""

    def resolve(self, name: str) -> Optional[np.ndarray]:
        """The array stored under ``name`` or under the variable it aliases; None when neither exists."""
        return self.variables.get(self.aliases.get(name, name))


def model_file(path: str | Path) -> Path:
    """``path`` itself, or ``path/model.bin`` for a model directory."""
    path = Path(path)
    return path / "model.bin" if path.is_dir() else path


def is_ctranslate2(path: str | Path) -> bool:
    """True when the file starts like a CTranslate2 model (a small version, then a ``...Spec`` name)."""
    path = model_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 2 + 256)
    except OSError:
        return False
    if len(head) < 7:
        return False
    version, length = struct.unpack_from("<IH", head)
    name = head[6 : 6 + length]
    return 0 < version < 100 and len(name) == length and name.endswith(b"Spec\x00")


class _Reader:
    def __init__(self, f: BinaryIO, source: str) -> None:
        self.f, self.source = f, source

    def exact(self, n: int, what: str) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise CTranslate2Error(f"{self.source}: file ends inside {what} ({len(data)} of {n} bytes)")
        return data

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.exact(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("H", what)
        raw = self.exact(n, what)
        if n == 0 or raw[-1] != 0:
            raise CTranslate2Error(f"{self.source}: {what} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as error:
            raise CTranslate2Error(f"{self.source}: {what} is not UTF-8 ({error})") from error

    def array(self, name: str) -> Tuple[np.ndarray, str]:
        rank = self.unpack("B", f"the rank of {name}")
        shape = tuple(self.unpack("I", f"the shape of {name}") for _ in range(rank))
        type_id = self.unpack("B", f"the dtype of {name}")
        if type_id >= len(DTYPES):
            raise CTranslate2Error(f"{self.source}: variable {name} has unknown dtype id {type_id}")
        dtype = DTYPES[type_id]
        n_bytes = self.unpack("I", f"the size of {name}")
        storage = np.dtype("<u2") if dtype == "bfloat16" else np.dtype(dtype).newbyteorder("<")
        expected = int(np.prod(shape, dtype=np.int64)) * storage.itemsize
        if n_bytes != expected:
            raise CTranslate2Error(
                f"{self.source}: variable {name} declares {n_bytes} bytes, its shape {shape} x {dtype} needs {expected}"
            )
        array = np.empty(shape, dtype=storage)
        flat = array.reshape(-1).view(np.uint8)
        got = self.f.readinto(memoryview(flat)) if n_bytes else 0
        if got != n_bytes:
            raise CTranslate2Error(f"{self.source}: file ends inside the data of {name} ({got} of {n_bytes} bytes)")
        if dtype == "bfloat16":  # the upper half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="), copy=False), dtype


def read_ctranslate2(path: str | Path) -> CTranslate2Model:
    """Read a CTranslate2 ``model.bin`` (or a model directory holding one).

    Raises:
        CTranslate2Error naming what is wrong: missing file, other binary version,
        truncated or inconsistent variable (by name), trailing bytes, alias to nothing.
    """
    path = model_file(path)
    if not path.is_file():
        raise CTranslate2Error(f"CTranslate2 model {path} does not exist")
    source = f"CTranslate2 model {path}"
    with open(path, "rb") as f:
        r = _Reader(f, source)
        version = r.unpack("I", "the binary version")
        if version != BINARY_VERSION:
            raise CTranslate2Error(f"{source}: binary version {version}; this reader knows version {BINARY_VERSION}")
        model = CTranslate2Model(r.string("the spec name"), r.unpack("I", "the spec revision"))
        for index in range(r.unpack("I", "the variable count")):
            name = r.string(f"the name of variable {index}")
            if name in model.variables:
                raise CTranslate2Error(f"{source}: variable {name} appears twice")
            model.variables[name], model.dtypes[name] = r.array(name)
        for index in range(r.unpack("I", "the alias count")):
            alias, target = r.string(f"alias {index}"), r.string(f"the target of alias {index}")
            if target not in model.variables:
                raise CTranslate2Error(f"{source}: alias {alias} points to {target}, which is not a variable")
            if alias in model.variables or alias in model.aliases:
                raise CTranslate2Error(f"{source}: alias {alias} is also a variable or another alias")
            model.aliases[alias] = target
        rest = f.read(1)
        if rest:
            raise CTranslate2Error(f"{source}: bytes left after the last alias")
    return model


# ---------------------------------------------------------------- Whisper mapping


class _Taker:
    """Hands out CTranslate2 variables (dequantized, as float32 torch tensors) and records what is used."""

    def __init__(self, model: CTranslate2Model) -> None:
        self.model = model
        self.used: set = set()
        self.missing: List[str] = []
        self.problems: List[str] = []

    def raw(self, name: str) -> Optional[np.ndarray]:
        value = self.model.resolve(name)
        if value is None:
            self.missing.append(name)
            return None
        self.used.add(name)
        return value

    def scalar(self, name: str) -> Optional[float]:
        value = self.raw(name)
        if value is None:
            return None
        if value.size != 1:
            self.problems.append(f"{name} should be a scalar, has shape {tuple(value.shape)}")
            return None
        return value.reshape(()).item()

    def tensor(self, name: str) -> Optional[Tensor]:
        """A weight or bias as float32; ``<x>/weight`` with ``<x>/weight_scale`` is dequantized."""
        value = self.raw(name)
        if value is None:
            return None
        dtype = self.model.dtypes.get(self.model.aliases.get(name, name), str(value.dtype))
        if dtype in ("int8", "int16", "int32"):
            scale = self.raw(f"{name}_scale")
            if scale is None:
                self.problems.append(f"{name} is {dtype} without {name}_scale")
                return None
            rows = value.reshape(value.shape[0], -1).astype(np.float32)
            factor = np.asarray(scale, dtype=np.float32).reshape(-1, 1)
            if factor.shape[0] not in (1, rows.shape[0]):
                self.problems.append(f"{name}_scale has {factor.shape[0]} entries for {rows.shape[0]} rows")
                return None
            value = (rows / factor).reshape(value.shape)
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def _layers(model: CTranslate2Model, part: str) -> int:
    """Number of ``<part>/layer_<i>/`` blocks (indices must run 0..n-1)."""
    names = list(model.variables) + list(model.aliases)
    found = set()
    for name in names:
        head, _, rest = name.partition("/")
        if head == part and rest.startswith("layer_") and "/" in rest:
            index = rest[len("layer_") : rest.index("/")]
            if index.isdigit():
                found.add(int(index))
    return max(found) + 1 if found else 0


def _split_rows(
    take: _Taker, name: str, parts: int, width: int, zero_key: Optional[int]
) -> Tuple[List[Optional[Tensor]], List[Optional[Tensor]]]:
    """Fused ``name/{weight,bias}`` rows cut in ``parts`` blocks of ``width``.

    The bias of block ``zero_key`` (a key projection) is checked to be zero and dropped.
    """
    weight, bias = take.tensor(f"{name}/weight"), take.tensor(f"{name}/bias")
    if weight is None or bias is None:
        return [None] * parts, [None] * parts
    if weight.shape[0] != parts * width or bias.shape != (parts * width,):
        take.problems.append(
            f"{name}: weight {tuple(weight.shape)} and bias {tuple(bias.shape)} "
            f"should hold {parts} x {width} fused rows"
        )
        return [None] * parts, [None] * parts
    weights, biases = list(weight.split(width)), list(bias.split(width))
    if zero_key is not None:
        key_bias = biases[zero_key]
        if key_bias.abs().max() > 0:
            take.problems.append(
                f"{name}/bias: the key rows' bias is not zero (max |b| {key_bias.abs().max().item():.3g}); "
                "Whisper's keys have no bias"
            )
        biases[zero_key] = None
    return weights, biases


def whisper_from_ctranslate2(model: CTranslate2Model, source: str) -> Tuple[Dict[str, int], Dict[str, Tensor]]:
    """(dims, openai-whisper ``model_state_dict``) of a CTranslate2 Whisper model, every variable accounted for.

    Raises:
        CTranslate2Error listing every missing and unexpected CTranslate2 variable (by its
        CTranslate2 name) and every value that Whisper's architecture rules out.
    """
    if model.spec != "WhisperSpec":
        raise CTranslate2Error(f"{source} holds a {model.spec}, not a WhisperSpec")
    take = _Taker(model)
    state: Dict[str, Tensor] = {}

    def put(key: str, value: Optional[Tensor]) -> None:
        if value is not None:
            state[key] = value

    def linear(ct2: str, openai: str) -> None:
        put(f"{openai}.weight", take.tensor(f"{ct2}/weight"))
        put(f"{openai}.bias", take.tensor(f"{ct2}/bias"))

    def norm(ct2: str, openai: str) -> None:
        put(f"{openai}.weight", take.tensor(f"{ct2}/gamma"))
        put(f"{openai}.bias", take.tensor(f"{ct2}/beta"))

    Fused = Tuple[Tuple[str, int, Optional[int]], ...]

    def attention(ct2: str, openai: str, width: int, fused: Fused, out: str) -> None:
        """fused: (linear name, number of fused projections, index of the key among them or None)."""
        names = iter(("query", "key", "value"))
        for linear_name, parts, key_index in fused:
            weights, biases = _split_rows(take, f"{ct2}/{linear_name}", parts, width, key_index)
            for weight, bias in zip(weights, biases):
                proj = next(names)
                put(f"{openai}.{proj}.weight", weight)
                put(f"{openai}.{proj}.bias", bias)
        linear(f"{ct2}/{out}", f"{openai}.out")

    def layer(part: str, i: int, width: int) -> None:
        """Layer ``i`` of ``part`` (``encoder`` or ``decoder``, whose layers also have cross-attention)."""
        ct2, openai = f"{part}/layer_{i}", f"{part}.blocks.{i}"
        norm(f"{ct2}/self_attention/layer_norm", f"{openai}.attn_ln")
        attention(f"{ct2}/self_attention", f"{openai}.attn", width, (("linear_0", 3, 1),), "linear_1")
        if part == "decoder":
            norm(f"{ct2}/attention/layer_norm", f"{openai}.cross_attn_ln")
            cross = (("linear_0", 1, None), ("linear_1", 2, 0))  # q alone, then [k; v]
            attention(f"{ct2}/attention", f"{openai}.cross_attn", width, cross, "linear_2")
        norm(f"{ct2}/ffn/layer_norm", f"{openai}.mlp_ln")
        linear(f"{ct2}/ffn/linear_0", f"{openai}.mlp.0")
        linear(f"{ct2}/ffn/linear_1", f"{openai}.mlp.2")

    conv1 = take.tensor("encoder/conv1/weight")
    embeddings = take.tensor("decoder/embeddings/weight")
    audio_pos = take.tensor("encoder/position_encodings/encodings")
    text_pos = take.tensor("decoder/position_encodings/encodings")
    audio_heads, text_heads = take.scalar("encoder/num_heads"), take.scalar("decoder/num_heads")
    if None in (conv1, embeddings, audio_pos, text_pos, audio_heads, text_heads):
        raise CTranslate2Error(f"{source}: not a Whisper model: missing {', '.join(take.missing + take.problems)}")
    dims = {
        "n_mels": int(conv1.shape[1]), "n_audio_ctx": int(audio_pos.shape[0]), "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": int(audio_heads), "n_audio_layer": _layers(model, "encoder"),
        "n_vocab": int(embeddings.shape[0]), "n_text_ctx": int(text_pos.shape[0]),
        "n_text_state": int(embeddings.shape[1]), "n_text_head": int(text_heads),
        "n_text_layer": _layers(model, "decoder"),
    }  # fmt: skip
    audio, text = dims["n_audio_state"], dims["n_text_state"]

    put("encoder.conv1.weight", conv1)
    put("encoder.conv1.bias", take.tensor("encoder/conv1/bias"))
    linear("encoder/conv2", "encoder.conv2")
    put("encoder.positional_embedding", audio_pos)
    norm("encoder/layer_norm", "encoder.ln_post")
    for i in range(dims["n_audio_layer"]):
        layer("encoder", i, audio)

    put("decoder.token_embedding.weight", embeddings)
    put("decoder.positional_embedding", text_pos)
    norm("decoder/layer_norm", "decoder.ln")
    for i in range(dims["n_text_layer"]):
        layer("decoder", i, text)

    _check_projection(take, embeddings)
    _check_flags(take)
    unexpected = sorted(name for name in [*model.variables, *model.aliases] if name not in take.used)
    fail_on_mismatches(
        f"{source} does not fit openai-whisper's layout",
        (
            ("missing variables", sorted(set(take.missing))),
            ("unexpected variables", unexpected),
            ("not Whisper", take.problems),
        ),
        CTranslate2Error,
    )
    return dims, state


def _check_projection(take: _Taker, embeddings: Tensor) -> None:
    """The output projection must be the token embedding (alias or equal values) and carry no bias."""
    name = "decoder/projection/weight"
    if take.model.aliases.get(name) == "decoder/embeddings/weight":
        take.used.add(name)
    else:
        weight = take.tensor(name)
        if weight is not None and not torch.equal(weight, embeddings):
            take.problems.append(f"{name} differs from decoder/embeddings/weight (Whisper ties them)")
    bias_name = "decoder/projection/bias"
    if take.model.resolve(bias_name) is not None:
        bias = take.tensor(bias_name)
        if bias is not None and bias.abs().max() > 0:
            take.problems.append(f"{bias_name} is not zero (Whisper's logits have no bias)")


FLAGS: Dict[str, Callable[[float], bool]] = {
    "decoder/activation": lambda v: v == GELU,
    "decoder/pre_norm": lambda v: v == 1,
    "decoder/scale_embeddings": lambda v: v == 0 or (isinstance(v, float) and v == 1.0),
    "decoder/alibi": lambda v: v == 0,
    "decoder/start_from_zero_embedding": lambda v: v == 0,
    "decoder/alignment_heads": lambda v: True,
    "decoder/alignment_layer": lambda v: True,
}
"""Scalar settings a Whisper spec may carry and the values Whisper's architecture needs."""
REQUIRED_FLAGS = ("decoder/activation", "decoder/pre_norm")


def _check_flags(take: _Taker) -> None:
    for name, ok in FLAGS.items():
        if name not in REQUIRED_FLAGS and take.model.resolve(name) is None:
            continue
        value = take.scalar(name)
        if value is not None and not ok(value):
            take.problems.append(f"{name} = {value} (Whisper needs {_needed(name)})")


def _needed(name: str) -> str:
    return {"decoder/activation": f"{GELU} = GELU", "decoder/pre_norm": "1"}.get(name, "0")


def load_whisper_ctranslate2(path: str | Path) -> Tuple[Dict[str, int], Dict[str, Tensor]]:
    """(dims, openai-whisper state dict) of a CTranslate2 Whisper ``model.bin`` or model directory."""
    path = model_file(path)
    return whisper_from_ctranslate2(read_ctranslate2(path), f"CTranslate2 model {path}")

