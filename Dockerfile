# The project image: the tracker, its CLI, the Prefect flows and the Streamlit dashboard.
# docker-compose.yml runs every service of the project (migrations, Prefect server, flows,
# dashboard) from this one image, so client and server speak the same Prefect version.
FROM python:3.11-slim-bookworm

# WeasyPrint (PDF letters and reports) needs Pango and a font with Latin and Arabic glyphs from
# the system: the packages scripts/ensure-system-libs.sh installs on a developer machine.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 \
        libpangoft2-1.0-0 \
        libharfbuzz-subset0 \
        fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Nothing phones home: Prefect and Streamlit telemetry off in every container. The image is for
# deployments: the tracker starts in production mode (a secret key is required, demo data is not
# allowed) unless ONBOARDING_ENVIRONMENT says otherwise.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    ONBOARDING_DATA_DIR=/data \
    ONBOARDING_ENVIRONMENT=production \
    PREFECT_HOME=/data/prefect

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
        --shell /usr/sbin/nologin app

# The source layout stays as in the repository: the tracker finds templates/ beside its package
# (tracker/messages/rendering.py TEMPLATES_DIR) and `streamlit run dashboard/app.py` runs from here.
WORKDIR /app

# The dependencies first, in a layer of their own, so that a code change does not reinstall them.
COPY pyproject.toml README.md LICENSE ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY tracker/ tracker/
COPY flows/ flows/
COPY dashboard/ dashboard/
COPY templates/ templates/
COPY .streamlit/config.toml .streamlit/config.toml

# Editable: the installed `onboarding` and `onboarding-flows` import the code in /app, next to
# templates/ and dashboard/. No dev extras. The code stays root's; the app writes only to /data.
RUN pip install -e . \
    && python -m compileall -q tracker flows dashboard \
    && mkdir -p /data/prefect \
    && chown -R app:app /data

USER app

EXPOSE 4200 8501
CMD ["onboarding", "--help"]
