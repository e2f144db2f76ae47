"""A tiny Common Voice release in Azerbaijani, spoken by espeak-ng.

``render_release(dest)`` writes the exact Common Voice layout (``clips/*.mp3``,
``train.tsv dev.tsv test.tsv validated.tsv`` with a recent release's header)
from the sentences below. Each espeak-ng voice variant of ``-v az`` is one
speaker, with a 128-hex ``client_id`` as Common Voice has; the splits are
speaker-disjoint. espeak-ng renders 22.05 kHz wav, torchaudio resamples it to
32 kHz, and soundfile (libsndfile >= 1.1, which bundles LAME) writes MP3
as Common Voice ships. The copy under ``test/fixtures/commonvoice_az`` was made with

    .venv/bin/python -m test.data.cv_fixture test/fixtures/commonvoice_az

(espeak-ng 1.51, Debian 12) so that tests run where espeak-ng is not installed.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "test" / "fixtures" / "commonvoice_az"
CV_RATE = 32000
HEADER = ("client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
          "age", "gender", "accents", "variant", "locale", "segment")

# (espeak-ng voice, split, sentences)
SPEAKERS = (
    ("az+m1", "train", ("Salam, necəsən?", "Bakı Azərbaycanın paytaxtıdır.", "Bu gün hava çox gözəldir.",
                        "Mən hər səhər çay içirəm.")),
    ("az+m3", "train", ("Uşaqlar həyətdə top oynayırlar.", "Kitab insanın ən yaxşı dostudur.",
                        "Qış gələndə dağlar qarla örtülür.", "Anam dadlı plov bişirdi.")),
    ("az+f2", "train", ("Şəhərin küçələri geniş və təmizdir.", "Gəncədə yeni körpü tikilir.",
                        "Ata-ana övladlarını çox sevir.", "\"Sabah görüşərik,\" dedi Leyla.")),
    ("az+f4", "dev", ("Xəzər dənizi dünyanın ən böyük gölüdür.", "İlham müəllim dərsə gecikmədi.",
                      "Biz qatarla Şəkiyə getdik.")),
    ("az", "test", ("Iğdır Naxçıvana yaxındır.", "Dostum mənə maraqlı bir hekayə danışdı.",
                    "Yağış yağanda çətir götür.")),
)


def client_id(voice: str) -> str:
    """A 128-hex speaker hash like Common Voice's ``client_id``."""
    return hashlib.sha512(voice.encode()).hexdigest()


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def render_mp3(voice: str, sentence: str, out: Path) -> None:
    """Speak ``sentence`` with espeak-ng ``-v voice`` and write it as a 32 kHz mono MP3."""
    import torch
    import torchaudio.functional as F

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "clip.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), sentence], check=True)
        samples, rate = sf.read(wav, dtype="float32")
    resampled = F.resample(torch.from_numpy(samples), rate, CV_RATE).numpy()
    sf.write(out, np.clip(resampled, -1.0, 1.0), CV_RATE, format="MP3", subtype="MPEG_LAYER_III")


def tsv_row(cid: str, clip: str, sentence_id: int, sentence: str) -> str:
    values = (cid, clip, f"{sentence_id:064x}", sentence, "", "2", "0", "", "", "", "", "az", "")
    return "\t".join(values)


def render_release(dest: Path) -> Path:
    """Write the release under ``dest`` (clips/ and the four tsvs); returns ``dest``."""
    (dest / "clips").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    number = 40000000
    for voice, split, sentences in SPEAKERS:
        for sentence in sentences:
            number += 1
            clip = f"common_voice_az_{number}.mp3"
            render_mp3(voice, sentence, dest / "clips" / clip)
            rows[split].append(tsv_row(client_id(voice), clip, number, sentence))
    rows["validated"] = rows["train"] + rows["dev"] + rows["test"]
    for name, lines in rows.items():
        (dest / f"{name}.tsv").write_text("\t".join(HEADER) + "\n" + "".join(f"{line}\n" for line in lines),
                                          encoding="utf-8")
    return dest


if __name__ == "__main__":
    render_release(Path(sys.argv[1]))
