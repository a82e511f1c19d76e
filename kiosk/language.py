"""The patient's language (`kiosk.language`): a BCP 47 tag, checked, named, and turned into
what each part of the kiosk needs.

* the gateway's `language` field and the realtime transcription language: ISO 639-1, the
  two-letter code (`pt-BR` -> `pt`), which is what both expect;
* the instructions: "Always answer in Portuguese (pt-BR)." (English, like the default
  instructions; the model understands the tag too);
* the spoken prompts: the tag picks espeak-ng's voice and the built-in sentences.

Only the simple tags a bedside kiosk needs are accepted: a language (ISO 639-1, or one of the
three-letter codes in EXTRA_LANGUAGES), optionally a script and a region, e.g. `de`, `de-AT`,
`pt-BR`, `es-419`, `sr-Latn`, `zh-Hant-TW`. Pure Python: check-config uses it too.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass


def _table(text: str) -> dict[str, str]:
    """"aa Afar|ab Abkhazian" -> {"aa": "Afar", "ab": "Abkhazian"}"""
    return dict(item.split(" ", 1) for item in text.split("|"))


# ISO 639-1 (Debian's iso-codes, without the withdrawn `bh`), with the English name used in
# "Answer in ...".
ISO_639_1: dict[str, str] = _table("""\
aa Afar|ab Abkhazian|ae Avestan|af Afrikaans|ak Akan|am Amharic|an Aragonese|ar Arabic|\
as Assamese|av Avaric|ay Aymara|az Azerbaijani|ba Bashkir|be Belarusian|bg Bulgarian|\
bi Bislama|bm Bambara|bn Bengali|bo Tibetan|br Breton|bs Bosnian|ca Catalan|ce Chechen|\
ch Chamorro|co Corsican|cr Cree|cs Czech|cu Church Slavic|cv Chuvash|cy Welsh|da Danish|\
de German|dv Divehi|dz Dzongkha|ee Ewe|el Greek|en English|eo Esperanto|es Spanish|\
et Estonian|eu Basque|fa Persian|ff Fulah|fi Finnish|fj Fijian|fo Faroese|fr French|\
fy Western Frisian|ga Irish|gd Scottish Gaelic|gl Galician|gn Guarani|gu Gujarati|gv Manx|\
ha Hausa|he Hebrew|hi Hindi|ho Hiri Motu|hr Croatian|ht Haitian Creole|hu Hungarian|\
hy Armenian|hz Herero|ia Interlingua|id Indonesian|ie Interlingue|ig Igbo|ii Sichuan Yi|\
ik Inupiaq|io Ido|is Icelandic|it Italian|iu Inuktitut|ja Japanese|jv Javanese|ka Georgian|\
kg Kongo|ki Kikuyu|kj Kuanyama|kk Kazakh|kl Kalaallisut|km Khmer|kn Kannada|ko Korean|\
kr Kanuri|ks Kashmiri|ku Kurdish|kv Komi|kw Cornish|ky Kyrgyz|la Latin|lb Luxembourgish|\
lg Ganda|li Limburgish|ln Lingala|lo Lao|lt Lithuanian|lu Luba-Katanga|lv Latvian|\
mg Malagasy|mh Marshallese|mi Maori|mk Macedonian|ml Malayalam|mn Mongolian|mr Marathi|\
ms Malay|mt Maltese|my Burmese|na Nauru|nb Norwegian Bokmål|nd North Ndebele|ne Nepali|\
ng Ndonga|nl Dutch|nn Norwegian Nynorsk|no Norwegian|nr South Ndebele|nv Navajo|ny Chichewa|\
oc Occitan|oj Ojibwa|om Oromo|or Odia|os Ossetian|pa Punjabi|pi Pali|pl Polish|ps Pashto|\
pt Portuguese|qu Quechua|rm Romansh|rn Rundi|ro Romanian|ru Russian|rw Kinyarwanda|\
sa Sanskrit|sc Sardinian|sd Sindhi|se Northern Sami|sg Sango|si Sinhala|sk Slovak|\
sl Slovenian|sm Samoan|sn Shona|so Somali|sq Albanian|sr Serbian|ss Swati|st Southern Sotho|\
su Sundanese|sv Swedish|sw Swahili|ta Tamil|te Telugu|tg Tajik|th Thai|ti Tigrinya|\
tk Turkmen|tl Tagalog|tn Tswana|to Tongan|tr Turkish|ts Tsonga|tt Tatar|tw Twi|ty Tahitian|\
ug Uyghur|uk Ukrainian|ur Urdu|uz Uzbek|ve Venda|vi Vietnamese|vo Volapük|wa Walloon|\
wo Wolof|xh Xhosa|yi Yiddish|yo Yoruba|za Zhuang|zh Chinese|zu Zulu""")

# Three-letter language subtags worth accepting (no two-letter code of their own), with the
# ISO 639-1 code of the macrolanguage that transcription understands.
EXTRA_LANGUAGES: dict[str, tuple[str, str]] = {
    "cmn": ("Mandarin Chinese", "zh"),
    "yue": ("Cantonese", "zh"),
    "fil": ("Filipino", "tl"),
}

_TAG = re.compile(r"""^(?P<language>[a-z]{2,3})
                      (?:-(?P<script>[a-z]{4}))?
                      (?:-(?P<region>[a-z]{2}|[0-9]{3}))?
                      (?P<variants>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*)$""",
                  re.VERBOSE | re.IGNORECASE)


@dataclass(frozen=True)
class Language:
    """A checked language tag in its canonical case (`pt-BR`, `sr-Latn`, `es-419`)."""

    tag: str
    primary: str  # lower case, e.g. "pt"
    region: str | None = None

    @property
    def name(self) -> str:
        """The English name of the language, e.g. "Portuguese"."""
        if self.primary in EXTRA_LANGUAGES:
            return EXTRA_LANGUAGES[self.primary][0]
        return ISO_639_1[self.primary]

    @property
    def iso639_1(self) -> str:
        """The two-letter code the gateway and the transcription take (`pt-BR` -> `pt`)."""
        if self.primary in EXTRA_LANGUAGES:
            return EXTRA_LANGUAGES[self.primary][1]
        return self.primary

    def answer_instruction(self) -> str:
        """The sentence added to the realtime instructions."""
        detail = f" ({self.tag})" if self.tag != self.primary else ""
        return f"Always answer in {self.name}{detail}."


def parse(value: str) -> Language:
    """A `Language` from a BCP 47 tag; ValueError says what is wrong and what to write."""
    text = str(value).strip()
    if "_" in text:
        raise ValueError(f"`{text}` is not a language tag: use a hyphen, not an underscore: "
                         f"`{text.replace('_', '-')}`")
    m = _TAG.match(text)
    if not m:
        raise ValueError(f"`{text}` is not a language tag; use a code like de, es, ar or "
                         f"pt-BR (BCP 47){_name_hint(text)}")
    primary = m["language"].lower()
    if primary not in ISO_639_1 and primary not in EXTRA_LANGUAGES:
        raise ValueError(f"`{primary}` is not a language code the kiosk knows; use a "
                         f"two-letter ISO 639-1 code like de, es or ar{_code_hint(primary)}")
    parts = [primary]
    if m["script"]:
        parts.append(m["script"].title())
    region = m["region"].upper() if m["region"] else None
    if region:
        parts.append(region)
    parts += [v.lower() for v in m["variants"].split("-") if v]
    return Language("-".join(parts), primary, region)


def problem(value: object) -> str | None:
    """What is wrong with a configured tag, or None (for check-config)."""
    if not isinstance(value, str):
        return f"`{value}` is not a language tag; use a code like de, es, ar or pt-BR"
    try:
        parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def _name_hint(text: str) -> str:
    """"German" -> ". Did you mean `de` (German)?" """
    by_name = {name.lower(): code for code, name in ISO_639_1.items()}
    close = difflib.get_close_matches(text.lower(), list(by_name), n=1, cutoff=0.75)
    if close:
        code = by_name[close[0]]
        return f". Did you mean `{code}` ({ISO_639_1[code]})?"
    return ""


def _code_hint(code: str) -> str:
    """"deu" -> ". Did you mean `de` (German)?" (many ISO 639-2 codes start like 639-1's)."""
    short = code[:2]
    return f". Did you mean `{short}` ({ISO_639_1[short]})?" if short in ISO_639_1 else ""
