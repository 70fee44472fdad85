"""The Streamlit dashboard: what case managers, partners, leadership and admins see and click."""
