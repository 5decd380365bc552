"""Benchmarks: proxy overhead, classification speed and accuracy, routing replay, reasoning."""
