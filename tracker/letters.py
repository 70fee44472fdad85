"""The welcome letter: a newcomer's personal checklist as printable HTML.

Rendered through the one sandboxed environment of :mod:`tracker.rendering` (rendering.py has no
public function for an arbitrary template name, so this module asks ``get_environment()`` for
``letters/welcome.{lang}.html``). Autoescape is on for ``.html``, so newcomer data stays inert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from jinja2 import TemplateNotFound
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.errors import PermissionDenied
from tracker.queries import case_view
from tracker.rendering import FALLBACK_LANGUAGE, TEMPLATES_DIR, TemplateMissing, get_environment

LETTER_LANGUAGES = ("de", "en", "ar")

# What to bring, per step key and language. Kept short: the case manager explains the rest.
DOCUMENTS: dict[str, dict[str, list[str]]] = {
    "recognition": {
        "de": [
            "Berufsabschluss oder Hochschulzeugnis im Original",
            "beglaubigte Übersetzungen ins Deutsche",
            "Lebenslauf und Nachweise über Berufserfahrung",
            "Reisepass",
        ],
        "en": [
            "original vocational or university certificates",
            "certified German translations",
            "CV and proof of work experience",
            "passport",
        ],
        "ar": [
            "أصل شهادة التدريب المهني أو الشهادة الجامعية",
            "ترجمات معتمدة إلى اللغة الألمانية",
            "السيرة الذاتية وإثباتات الخبرة المهنية",
            "جواز السفر",
        ],
    },
    "job_offer": {
        "de": ["Arbeitsvertrag oder verbindliches Arbeitsplatzangebot", "Reisepass"],
        "en": ["employment contract or binding job offer", "passport"],
        "ar": ["عقد العمل أو عرض عمل ملزم", "جواز السفر"],
    },
    "visa": {
        "de": ["Reisepass", "Vorabzustimmung der Ausländerbehörde", "biometrisches Passfoto"],
        "en": ["passport", "pre-approval from the foreigners' authority", "biometric photo"],
        "ar": ["جواز السفر", "الموافقة المسبقة من دائرة الأجانب", "صورة شخصية بيومترية"],
    },
    "housing": {
        "de": ["Reisepass", "Mietvertrag", "Wohnungsgeberbestätigung vom Vermieter"],
        "en": ["passport", "rental contract", "landlord confirmation (Wohnungsgeberbestätigung)"],
        "ar": ["جواز السفر", "عقد الإيجار", "تأكيد المؤجر (Wohnungsgeberbestätigung)"],
    },
    "registration": {
        "de": ["Reisepass", "Wohnungsgeberbestätigung", "Mietvertrag"],
        "en": ["passport", "landlord confirmation (Wohnungsgeberbestätigung)", "rental contract"],
        "ar": ["جواز السفر", "تأكيد المؤجر (Wohnungsgeberbestätigung)", "عقد الإيجار"],
    },
    "tax_id": {
        "de": ["Meldebescheinigung (die Steuer-ID kommt per Post)"],
        "en": ["registration certificate (the tax ID arrives by post)"],
        "ar": ["شهادة تسجيل السكن (يصل الرقم الضريبي بالبريد)"],
    },
    "bank_account": {
        "de": ["Reisepass", "Meldebescheinigung"],
        "en": ["passport", "registration certificate"],
        "ar": ["جواز السفر", "شهادة تسجيل السكن"],
    },
    "health_insurance": {
        "de": ["Reisepass", "Arbeitsvertrag oder Immatrikulationsbescheinigung"],
        "en": ["passport", "employment contract or proof of enrolment"],
        "ar": ["جواز السفر", "عقد العمل أو إثبات التسجيل في الجامعة"],
    },
    "residence_title": {
        "de": [
            "Reisepass mit Visum",
            "biometrisches Passfoto",
            "Meldebescheinigung",
            "Nachweis der Krankenversicherung",
            "Arbeitsvertrag oder Finanzierungsnachweis",
        ],
        "en": [
            "passport with visa",
            "biometric photo",
            "registration certificate",
            "proof of health insurance",
            "employment contract or proof of funds",
        ],
        "ar": [
            "جواز السفر مع التأشيرة",
            "صورة شخصية بيومترية",
            "شهادة تسجيل السكن",
            "إثبات التأمين الصحي",
            "عقد العمل أو إثبات التمويل",
        ],
    },
    "integration_course": {
        "de": ["Aufenthaltstitel", "Berechtigungsschein zum Integrationskurs"],
        "en": ["residence title", "integration course entitlement letter"],
        "ar": ["تصريح الإقامة", "إشعار الأحقية في دورة الاندماج"],
    },
    "fit_enrollment": {
        "de": ["Immatrikulationsbescheinigung der THGA"],
        "en": ["THGA proof of enrolment"],
        "ar": ["إثبات التسجيل في جامعة THGA"],
    },
    "job_entry": {
        "de": [
            "Reisepass oder Personalausweis",
            "Aufenthaltstitel, falls Sie einen brauchen",
            "Steuer-ID",
            "Nachweis der Krankenversicherung",
            "Bankverbindung",
        ],
        "en": [
            "passport or ID card",
            "residence title, if you need one",
            "tax ID",
            "proof of health insurance",
            "bank details",
        ],
        "ar": [
            "جواز السفر أو بطاقة الهوية",
            "تصريح الإقامة، إذا كنت تحتاج إليه",
            "الرقم الضريبي",
            "إثبات التأمين الصحي",
            "بيانات الحساب البنكي",
        ],
    },
}

# What a legal reference means for the newcomer, by step key (a clock is always on one step).
LEGAL_MEANING: dict[str, dict[str, str]] = {
    "registration": {
        "de": "Anmeldung innerhalb von 14 Tagen nach dem Einzug",
        "en": "Anmeldung within 14 days of moving in",
        "ar": "التسجيل (Anmeldung) خلال 14 يومًا من الانتقال إلى السكن",
    },
    "residence_title": {
        "de": "Antrag stellen, bevor das Visum abläuft",
        "en": "apply before your visa expires",
        "ar": "قدّم الطلب قبل انتهاء صلاحية التأشيرة",
    },
    "recognition": {
        "de": "Entscheidung innerhalb von 3 Monaten (beschleunigt 2) nach vollständigen Unterlagen",
        "en": "decision within 3 months (2 accelerated) of a complete file",
        "ar": "القرار خلال 3 أشهر (شهران في الإجراء المعجّل) من اكتمال الملف",
    },
    "job_offer": {
        "de": "Zustimmung gilt nach 2 Wochen (beschleunigt 1) als erteilt",
        "en": "approval is deemed given after 2 weeks (1 accelerated)",
        "ar": "تُعتبر الموافقة ممنوحة بعد أسبوعين (أسبوع في الإجراء المعجّل)",
    },
    "integration_course": {
        "de": "Anspruch erlischt 1 Jahr nach Erteilung des Aufenthaltstitels",
        "en": "entitlement lapses 1 year after the residence title is issued",
        "ar": "ينتهي الحق بعد سنة من إصدار تصريح الإقامة",
    },
}

_STATE = {
    "done": "done",
    "skipped": "skipped",
    "open": "open",
    "in_progress": "open",
    "blocked": "open",
    "pending": "pending",
}


@dataclass(frozen=True)
class LetterStep:
    key: str
    title: str
    owner_name: str
    state: str  # done, skipped, open or pending
    legal_due: date | None
    legal_reference: str | None
    legal_meaning: str | None
    documents: list[str]


def letter_language(preferred: str | None, language: str | None = None) -> str:
    """The wanted language (or the preferred one) if a letter template exists, else German."""
    wanted = (language or preferred or FALLBACK_LANGUAGE).lower()
    for lang in (wanted, wanted.replace("-", "_").split("_")[0]):
        if lang in LETTER_LANGUAGES and (TEMPLATES_DIR / f"letters/welcome.{lang}.html").exists():
            return lang
    return FALLBACK_LANGUAGE


# Languages written right to left: the shared letter style mirrors its layout for them.
RIGHT_TO_LEFT = frozenset({"ar", "fa", "he", "ur"})


def welcome_letter(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    language: str | None = None,
    today: date | None = None,
) -> str:
    """The welcome letter for one case as a complete HTML document (case managers and admins)."""
    if not actor.manages_cases:
        # case_view lets a partner see a handed-over slice; the letter is the case manager's.
        raise PermissionDenied(f"{actor.role} may not write welcome letters.")
    today = today or clocks.local_today()
    view = case_view(session, actor=actor, reference=reference, today=today)
    lang = letter_language(view.newcomer.get("preferred_language"), language)
    # The catalogue has German and English titles only; other languages read the English one.
    steps = [
        LetterStep(
            key=s.key,
            title=s.title_de if lang == "de" else s.title_en,
            owner_name=s.owner_name,
            state=_STATE.get(s.state, "open"),
            legal_due=s.legal_due,
            legal_reference=s.legal_reference,
            legal_meaning=LEGAL_MEANING.get(s.key, {}).get(lang) if s.legal_reference else None,
            documents=DOCUMENTS.get(s.key, {}).get(lang, []),
        )
        for s in view.steps
    ]
    name = f"letters/welcome.{lang}.html"
    try:
        template = get_environment().get_template(name)
    except TemplateNotFound as exc:  # pragma: no cover - the three templates ship with the code
        raise TemplateMissing(f"No letter template {name} under {TEMPLATES_DIR}.") from exc
    context: dict[str, Any] = {
        "given_name": view.newcomer.get("given_name", ""),
        "reference": view.reference,
        "steps": steps,
        "today": today,
    }
    # Our own names go last so nothing in the context can replace them.
    return template.render({**context, "lang": lang, "rtl": lang in RIGHT_TO_LEFT})
