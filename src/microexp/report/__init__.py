"""Reporting: text tables for the terminal (HTML report to come)."""
