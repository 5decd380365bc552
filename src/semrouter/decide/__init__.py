"""Decisions: rule trees over signals, priorities, and learned model selection."""
