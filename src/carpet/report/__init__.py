"""Figures and reports: journal-style plots (KM with number at risk, MIP, Sankey) and self-contained HTML."""
