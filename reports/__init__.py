"""Presentation: Markdown, HTML and plots rendered from ``analysis`` views. Reads result
directories through ``analysis.table``; never writes into them."""
