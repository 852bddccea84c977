"""Placeholder entry point until the explorer lands: lists the checkpoints it finds."""

from pathlib import Path

import streamlit as st

st.title("hfnet explorer")
found = sorted(Path(__file__).resolve().parent.parent.joinpath("checkpoints").glob("*.safetensors"))
st.write(f"Found {len(found)} checkpoint(s).")
for p in found:
    st.write(p.name)
