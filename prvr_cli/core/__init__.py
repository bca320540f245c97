"""Definitions every layer shares and none may redefine (no torch, no other prvr imports)."""
