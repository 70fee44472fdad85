#!/usr/bin/env bash
# WeasyPrint (PDF letters and reports) needs Pango, HarfBuzz's font subsetter and a font with Latin and Arabic glyphs from the
# system. Install Debian's packages when they are missing and we may (root, apt); otherwise say what
# is missing and let the PDF code report it clearly when it is used.
set -u
missing=()
ldconfig -p 2>/dev/null | grep -q 'libpango-1.0.so.0' || missing+=(libpango-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0' || missing+=(libpangoft2-1.0-0)
ldconfig -p 2>/dev/null | grep -q 'libharfbuzz-subset.so.0' || missing+=(libharfbuzz-subset0)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${missing[*]} (Debian packages) for PDF output ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || echo "Could not install ${missing[*]}." >&2
else
  echo "PDF output needs ${missing[*]}; install them with your package manager." >&2
fi
exit 0
