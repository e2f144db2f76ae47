"""Azerbaijani transcript normalisation, one rule per test, on real sentences."""
from __future__ import annotations

import unicodedata

import pytest

from echo_plugin.text import get_normalizer
from echo_plugin.text.azerbaijani import AZ_ALPHABET, foreign_letters, normalize_azerbaijani, turkic_lower


def test_turkic_casing_of_dotted_and_dotless_i() -> None:
    # str.lower() gets both wrong: 'I' -> 'i' and 'İ' -> 'i' + U+0307.
    assert "IĞDIR".lower() == "iğdir" and "İ".lower() == "i\u0307"
    assert normalize_azerbaijani("İSTANBUL VƏ IĞDIR") == "istanbul və ığdır"
    assert normalize_azerbaijani("İlham İsmayılov") == "ilham ismayılov"
    assert turkic_lower("ILIQ İSTİ") == "ılıq isti"


def test_other_letters_lower_case_as_usual() -> None:
    assert normalize_azerbaijani("ƏLİ ÇAĞIRDI, ŞÜKÜR GÖZLƏDİ") == "əli çağırdı şükür gözlədi"
    assert normalize_azerbaijani("QIŞ XƏZƏR") == "qış xəzər"


def test_nfc_joins_decomposed_letters() -> None:
    decomposed = unicodedata.normalize("NFD", "Şəki, Gəncə və Göyçay")
    assert decomposed != "Şəki, Gəncə və Göyçay"  # ş, ç, ö are split into base + mark
    assert normalize_azerbaijani(decomposed) == "şəki gəncə və göyçay"
    # 'I' + combining dot above is the capital İ, which lower-cases to plain 'i'
    assert normalize_azerbaijani("I\u0307lham") == "ilham"
    # text already lower-cased the wrong way (i + U+0307) is repaired
    assert normalize_azerbaijani("i\u0307lham") == "ilham"


@pytest.mark.parametrize("written", ["Gänclik", "G\u04d9nclik", "G\u01ddnclik"])
def test_schwa_lookalikes(written: str) -> None:
    assert normalize_azerbaijani(written) == "gənclik"
    assert normalize_azerbaijani("\u04d8li gəldi") == normalize_azerbaijani("Äli gəldi") == "əli gəldi"


def test_cyrillic_homoglyphs_become_latin() -> None:
    mixed = "B\u0430k\u0131 \u0441\u043eх gözəldir"  # Cyrillic а, с, о mixed into Latin words
    assert normalize_azerbaijani(mixed) == "bakı cox gözəldir"
    assert foreign_letters(normalize_azerbaijani(mixed)) == set()


def test_upper_case_cyrillic_homoglyphs_become_latin() -> None:
    """Capitals are mapped too, before lower-casing: Cyrillic А in an upper-case word is Latin A."""
    assert normalize_azerbaijani("\u0410ZƏRBAYCAN") == "azərbaycan"
    assert normalize_azerbaijani("\u0410ZƏRB\u0410Y\u0421\u0410N") == "azərbaycan"
    upper = "\u0410\u0415\u041e\u0420\u0421\u0425\u0423\u0408"  # Cyrillic А Е О Р С Х У Ј
    assert normalize_azerbaijani(upper) == normalize_azerbaijani("AEOPCXYJ") == "aeopcxyj"
    # Cyrillic І is drawn as Latin I, the capital of the dotless ı
    assert normalize_azerbaijani("\u0406ĞD\u0406R") == normalize_azerbaijani("IĞDIR") == "ığdır"
    assert foreign_letters(normalize_azerbaijani("B\u0410KI \u0421OX GÖZƏLDİR")) == set()


def test_punctuation_removed() -> None:
    assert normalize_azerbaijani("Salam, necəsən?") == "salam necəsən"
    assert normalize_azerbaijani('"Sabah görüşərik," dedi Leyla.') == "sabah görüşərik dedi leyla"
    assert normalize_azerbaijani("Bakı — Azərbaycanın paytaxtıdır!") == "bakı azərbaycanın paytaxtıdır"
    assert normalize_azerbaijani("«Kitab» (roman); 1-ci hissə…") == "kitab roman 1 ci hissə"


def test_intra_word_apostrophe_kept_others_dropped() -> None:
    assert normalize_azerbaijani("Bu e'tibarlı ma'lumatdır.") == "bu e'tibarlı ma'lumatdır"
    assert normalize_azerbaijani("Bu e\u2019tibarlı ma\u02bclumatdır.") == "bu e'tibarlı ma'lumatdır"
    assert normalize_azerbaijani("'Salam' dedi.") == "salam dedi"
    assert normalize_azerbaijani("sözlər' və") == "sözlər və"


def test_hyphenated_compounds_split() -> None:
    assert normalize_azerbaijani("Ata-ana övladlarını sevir.") == "ata ana övladlarını sevir"


def test_digits_kept() -> None:
    assert normalize_azerbaijani("2024-cü ildə 3 kitab oxudum.") == "2024 cü ildə 3 kitab oxudum"


def test_whitespace_collapsed() -> None:
    assert normalize_azerbaijani("  Mən\thər\u00a0səhər \n çay  içirəm.  ") == "mən hər səhər çay içirəm"
    assert normalize_azerbaijani(" ... !? ") == ""


def test_output_alphabet_and_idempotence() -> None:
    sentences = ["Xəzər dənizi dünyanın ən böyük gölüdür.", "Uşaqlar həyətdə top oynayırlar.",
                 "QIŞ GƏLƏNDƏ DAĞLAR QARLA ÖRTÜLÜR.", "Dostum mənə maraqlı bir hekayə danışdı."]
    for sentence in sentences:
        once = normalize_azerbaijani(sentence)
        assert normalize_azerbaijani(once) == once
        assert set(once.replace(" ", "")) <= AZ_ALPHABET


def test_foreign_letters_reported() -> None:
    assert foreign_letters(normalize_azerbaijani("Windows proqramı")) == {"w"}


def test_normalizer_lookup() -> None:
    assert get_normalizer("az") is normalize_azerbaijani
    assert get_normalizer("none")("  Salam,\t Dünya ") == "Salam, Dünya"
    with pytest.raises(KeyError, match="known: az, none"):
        get_normalizer("tr")
