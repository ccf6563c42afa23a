"""Hostile chart code for the code tool's sandbox tests (see ``cases.py``)."""
