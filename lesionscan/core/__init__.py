"""Foundations every stage shares: errors, the class list, atomic writes, the study's parameters."""
