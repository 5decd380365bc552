"""Offline training of semrouter's learned parts (domain and reasoning heads, model selector)."""
