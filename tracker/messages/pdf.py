"""HTML to printable PDF with WeasyPrint, strictly offline.

Letters and reports are complete HTML documents with inline CSS and inline SVG, so the only
resources a page may load are ``data:`` URLs; anything else (a web font, a tracking pixel in a
tampered template) is refused rather than fetched.
"""

from __future__ import annotations

from tracker.errors import TrackerError


class PdfUnavailable(TrackerError):
    """WeasyPrint's system libraries (Pango) are missing on this machine."""


def html_to_pdf(html: str) -> bytes:
    """The PDF of one HTML document (A4, as its CSS ``@page`` says)."""
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher
    except OSError as exc:  # WeasyPrint loads Pango through ctypes at import
        raise PdfUnavailable(
            "PDF output needs Pango (Debian: libpango-1.0-0 libpangoft2-1.0-0); `make "
            "setup` installs it when run as root. ({detail})",
            detail=exc,
        ) from exc
    fetcher = URLFetcher(allowed_protocols={"data"}, timeout=1, allow_redirects=False)
    pdf = HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf()
    assert pdf is not None  # write_pdf without a target returns the bytes
    return bytes(pdf)
