"""UI strings through Babel's gettext catalogues: German by default, English at a click.

Message ids are English; `locales/<lang>/LC_MESSAGES/messages.po` holds each translation. The
catalogues are compiled in memory when first used, so there is no build step to forget.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES = Path(__file__).parent / "locales"
LANGUAGES = {"de": "Deutsch", "en": "English"}
DEFAULT = "de"


@lru_cache(maxsize=8)
def translations(language: str) -> Translations:
    path = LOCALES / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def gettext_for(language: str) -> Callable[[str], str]:
    """The `_` function for a language; unknown languages fall back to German."""
    lang = language if language in LANGUAGES else DEFAULT
    return translations(lang).gettext
