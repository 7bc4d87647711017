"""HubSpot stand-in: OAuth v1 (authorize page, token, token info), CRM v3 objects (contacts,
companies, deals: CRUD, batch, search) and CRM v4 associations, with per-portal rate limits.

Shapes follow HubSpot's public documentation; ``routes.py`` lists every endpoint.
"""
