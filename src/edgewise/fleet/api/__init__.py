"""HTTP routers: `device` (enrollment and the device protocol) and the operator API."""
