"""The hfnet explorer (Streamlit). Entry point: ``streamlit run app/streamlit_app.py``.

Its pages live in ``app/views/``, not ``app/pages/``: a ``pages/`` folder next to the entry script would put
Streamlit into its legacy multipage mode, where a first request to a page URL runs that page file alone
(no navigation, no sidebar). ``streamlit_app.py`` builds the navigation with ``st.navigation``.
"""
