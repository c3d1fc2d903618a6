"""Shared foundation: errors, plug-in registries, signing, the bundle manifest, targets, wire schemas.

`core` imports no other part of edgewise; the server and the agent talk only through it.
"""
