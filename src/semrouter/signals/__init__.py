"""Signals derived from a request: learned heads, similarity, keywords, context length."""
