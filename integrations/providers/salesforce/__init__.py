"""Salesforce: the provider descriptor (``provider.py``) and its CRM client (``client.py``).

``mapping.py`` holds the unified <-> Salesforce field mapping, ``soql.py`` the SOQL builder
(escaping, filters, keyset cursors), ``wire.py`` Salesforce's JSON shapes, ``transport.py``
the per-call policy (simple-salesforce in a worker thread, one refresh on 401, call log with
the org's API usage), ``errors.py`` the error translation, ``batch.py`` sObject Collections
writes and ``associations.py`` the links between records.
"""
