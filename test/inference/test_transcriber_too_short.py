"""A clip of a few samples through the Python API of a tiny random packed model: the front end (an STFT whose
half window, 128 samples, is longer than the clip) cannot frame it, so it is refused as too short, not with the
STFT's exception, and the clips beside it in a batch are decoded as without it."""
from __future__ import annotations

import pytest

from echo_plugin.inference.audio import AudioError
from test.inference.tiny_pack import babble, pack_tiny


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from echo_plugin.inference.transcriber import load

    work = tmp_path_factory.mktemp("tiny_short")
    return load(pack_tiny(work), cache_dir=work / "unpacked")


def test_the_front_end_refuses_a_few_samples_and_takes_a_clip(model) -> None:
    assert model.too_short(babble(1.0, 1)[:40]) and model.too_short(babble(1.0, 1)[:0])
    assert not model.too_short(babble(1.0, 1)[:200])  # framed; whether the encoder gives a frame is its matter
    assert not model.too_short(babble(1.0, 1))


def test_a_few_samples_are_none_in_a_batch_and_too_short_alone(model) -> None:
    a, b = babble(1.3, 1), babble(0.9, 2)
    out = model.transcribe_batch([a, babble(1.0, 3)[:40], b])
    assert out[1] is None
    assert [out[0][0].text, out[2][0].text] == [h[0].text for h in model.transcribe_batch([a, b])]
    with pytest.raises(AudioError, match=r"^too short audio: 0.005 s give the encoder no output frame$"):
        model.transcribe(babble(1.0, 3)[:40])
