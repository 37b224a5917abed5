"""Safe text: data strings (item titles, ids, run names) may hold HTML or Markdown.

Show them only through ``st.dataframe`` / ``st.text``, in Plotly hover text via :func:`safe_label`,
or in Markdown via :func:`md_escape`; never pass data to ``unsafe_allow_html``.
"""
from __future__ import annotations

import html
import re
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def md_escape(text: Any) -> str:
    """Escape a data string for ``st.markdown`` so it shows literally (no HTML, links or formatting)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def safe_label(text: Any) -> str:
    """Escape a data string for Plotly text / hover (Plotly renders a subset of HTML tags)."""
    return html.escape(str(text), quote=True)
