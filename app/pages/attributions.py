"""Placeholder: this page is being written."""

import streamlit as st

st.title("attributions")
st.info("This page is not written yet.")
