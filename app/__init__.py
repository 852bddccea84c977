"""The hfnet explorer (Streamlit). Entry point: ``streamlit run app/streamlit_app.py``."""
