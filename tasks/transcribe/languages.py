"""The languages Whisper hears, by code and name; a declared language (a feed's, an episode's, the settings') read
as one of them; which models hear English only, and the two model=auto chooses from. Imports nothing of podflow's,
so the settings can read it.
"""

from __future__ import annotations

import re

# Whisper's languages: verbose_json names them ("english"); the other backends record codes ("en").
# Own table, not whisper.tokenizer.TO_LANGUAGE_CODE: importing whisper loads torch (2 s, a GiB) on an API-only path.
LANGUAGE_CODES = {
    name.replace("_", " "): code
    for code, name in (
        pair.split(":")
        for pair in (
            "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese pt:portuguese "
            "tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian id:indonesian hi:hindi "
            "fi:finnish vi:vietnamese he:hebrew uk:ukrainian el:greek ms:malay cs:czech ro:romanian da:danish "
            "hu:hungarian ta:tamil no:norwegian th:thai ur:urdu hr:croatian bg:bulgarian lt:lithuanian la:latin "
            "mi:maori ml:malayalam cy:welsh sk:slovak te:telugu fa:persian lv:latvian bn:bengali sr:serbian "
            "az:azerbaijani sl:slovenian kn:kannada et:estonian mk:macedonian br:breton eu:basque is:icelandic "
            "hy:armenian ne:nepali mn:mongolian bs:bosnian kk:kazakh sq:albanian sw:swahili gl:galician "
            "mr:marathi pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba so:somali af:afrikaans oc:occitan "
            "ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic yi:yiddish lo:lao uz:uzbek "
            "fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese sa:sanskrit lb:luxembourgish "
            "my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese tt:tatar haw:hawaiian ln:lingala ha:hausa "
            "ba:bashkir jw:javanese su:sundanese yue:cantonese"
        ).split()
    )
}
WHISPER_CODES = frozenset(LANGUAGE_CODES.values())
# ISO 639 codes feeds use that Whisper spells otherwise: Norwegian Bokmål, and the withdrawn or older spellings.
ALIASES = {"nb": "no", "iw": "he", "in": "id", "ji": "yi", "jv": "jw"}
ENGLISH = "en"
AUTO_MODEL = "auto"
AUTO_ENGLISH_MODEL = "bundled:tiny.en"  # what auto hears English and undeclared languages with
AUTO_MULTILINGUAL_MODEL = "bundled:base"  # and any other declared language
MAX_DECLARED_CHARS = 64  # "fr-FR", "English", "zh-Hant-TW": a longer string is no language tag
SUBTAG = re.compile(r"[-_]")


def spoken_language(declared: str | None) -> str | None:
    """A declared language as Whisper's code (`fr-FR`, `FR`, `fr_ca`, `French` -> `fr`); None where it names none
    Whisper hears: from a feed, a stranger's string, never passed on as written."""
    if not declared or len(declared) > MAX_DECLARED_CHARS:
        return None
    text = declared.strip().lower()
    if text in LANGUAGE_CODES:
        return LANGUAGE_CODES[text]
    code = SUBTAG.split(text, maxsplit=1)[0]
    code = ALIASES.get(code, code)
    return code if code in WHISPER_CODES else None


def english_only(model: str) -> bool:
    """Whether a model hears English only: Whisper's English models are named `*.en` (`bundled:tiny.en`,
    `small.en`, a folder `models/base.en`)."""
    return model.rstrip("/\\").endswith(".en")
