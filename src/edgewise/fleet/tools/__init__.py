"""Clients of the server that are not the server: the operator API client (CLI and demo), the
device simulator and its light HTTP load client."""
