"""Blueprints by audience; each is thin: parse, call a service, render."""
