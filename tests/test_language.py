"""kiosk.language: BCP 47 tags checked, named and turned into what the gateway, the
transcription and the instructions take."""

from __future__ import annotations

import pytest

from kiosk import language as lang


@pytest.mark.parametrize(("value", "tag", "iso", "instruction"), [
    ("de", "de", "de", "Always answer in German."),
    ("AR", "ar", "ar", "Always answer in Arabic."),
    ("pt-br", "pt-BR", "pt", "Always answer in Portuguese (pt-BR)."),
    ("es-419", "es-419", "es", "Always answer in Spanish (es-419)."),
    ("sr-latn-rs", "sr-Latn-RS", "sr", "Always answer in Serbian (sr-Latn-RS)."),
    ("yue", "yue", "zh", "Always answer in Cantonese."),
    ("de-CH-1996", "de-CH-1996", "de", "Always answer in German (de-CH-1996)."),
])
def test_tags_are_canonical_and_named(value, tag, iso, instruction):
    parsed = lang.parse(value)
    assert (parsed.tag, parsed.iso639_1, parsed.answer_instruction()) == (tag, iso, instruction)
    assert lang.problem(value) is None


@pytest.mark.parametrize(("value", "says"), [
    ("pt_BR", "use a hyphen, not an underscore: `pt-BR`"),
    ("German", "Did you mean `de` (German)?"),
    ("deu", "Did you mean `de` (German)?"),
    ("xx", "not a language code the kiosk knows"),
    ("en-US-x-kiosk", "is not a language tag"),
    ("", "is not a language tag"),
    ("d", "is not a language tag"),
])
def test_bad_tags_say_what_to_write(value, says):
    problem = lang.problem(value)
    assert problem is not None and says in problem, problem
    with pytest.raises(ValueError):
        lang.parse(value)


def test_every_two_letter_code_is_iso_639_1():
    assert len(lang.ISO_639_1) == 183
    assert all(len(code) == 2 and code.isalpha() and code.islower() for code in lang.ISO_639_1)
    assert lang.problem(1234) is not None  # YAML can hand over a number
