"""Placeholder while the page is built (issue 6)."""

import streamlit as st

st.info("This page is being built.")
