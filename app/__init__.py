"""The hfnet explorer (Streamlit). Entry point: ``streamlit run app/streamlit_app.py``.

Importing this package (every page does, via ``app.state`` / ``app.ui``) also leaves Streamlit's legacy
pages-folder mode if it is on; see ``_leave_legacy_pages_mode``.
"""

import streamlit as st


def _leave_legacy_pages_mode() -> None:
    """If Streamlit ran a page file on its own, switch to the navigation of ``streamlit_app.py`` and rerun.

    Streamlit treats an app whose entry script sits next to a ``pages/`` folder as a legacy multipage app
    until ``st.navigation`` runs once in the process: if the very first request after the server starts is
    a page URL (a bookmark), it runs that page file directly - no sidebar, no shared state. The first page
    that imports this module then turns that mode off for the whole process and reruns, so the entry
    script (navigation + sidebar) runs and opens the same page.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx
    except ImportError:  # a streamlit without these internals: nothing to fix
        return
    if not PagesManager.uses_pages_directory:
        return
    ctx = get_script_run_ctx()
    if ctx is None or ctx.page_script_hash == ctx.pages_manager.main_script_hash:
        return  # the entry script itself is running: its st.navigation call ends legacy mode
    PagesManager.uses_pages_directory = False
    st.rerun()


_leave_legacy_pages_mode()
