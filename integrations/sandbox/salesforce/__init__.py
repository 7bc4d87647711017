"""Salesforce stand-in: OAuth 2.0 web server flow on three kinds of login host (production,
sandbox, My Domain) with PKCE, the identity URL and revocation; and, on a TLS listener of its own
(the org's ``instance_url``), REST API v62.0: sObject CRUD and describe, SOQL query and queryAll
with paging, sObject Collections, limits and the ``Sforce-Limit-Info`` header.

Shapes follow Salesforce's public documentation; ``routes.py`` lists every endpoint.
"""
