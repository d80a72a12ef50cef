"""Conversation datasets joined to segment ids. Registered by name in MAPPED."""
