"""Report templates and their page: the same labels in every language, the footer's CSS."""

from __future__ import annotations

from jinja2 import nodes

from tracker.messages.rendering import TEMPLATES_DIR, get_environment
from tracker.reporting import reports


def test_every_report_template_has_the_same_labels_in_every_language():
    env = get_environment()
    for kind in reports.REPORT_KINDS:
        languages = reports.report_languages(kind)
        assert {"de", "en"} <= set(languages), f"{kind}: German and English are required"
        keys = {}
        for language in languages:
            source = (TEMPLATES_DIR / "reports" / f"{kind}.{language}.html").read_text("utf-8")
            assign = next(
                n for n in env.parse(source).find_all(nodes.Assign) if n.target.name == "L"
            )
            keys[language] = _dict_keys(assign.node)
        for language, found in keys.items():
            missing = keys["de"] - found
            extra = found - keys["de"]
            assert not missing and not extra, (kind, language, missing, extra)


def _dict_keys(node: nodes.Node, prefix: str = "") -> set[str]:
    out = set()
    assert isinstance(node, nodes.Dict)
    for pair in node.items:
        key = f"{prefix}{pair.key.value}"
        out.add(key)
        if isinstance(pair.value, nodes.Dict):
            out |= _dict_keys(pair.value, key + ".")
        if isinstance(pair.value, nodes.List):
            out.add(f"{key}[{len(pair.value.items)}]")
    return out


def test_the_office_name_is_quoted_for_css_in_the_page_footer():
    quoted = str(reports.css_string('Welcome & Co "</style><script>'))
    assert quoted.startswith('"') and quoted.endswith('"')
    assert "<" not in quoted and "&" not in quoted and '"' not in quoted[1:-1]
