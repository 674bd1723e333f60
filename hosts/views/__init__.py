"""Pages, one module per noun: hosts, guests, profiles, changes and the audit log; role checks are in common.

Every page needs a logged-in user holding a role, every POST is role-checked (403 otherwise) and
CSRF-protected, and a view only checks input and calls one service function or task, putting the service's
errors back next to the fields they concern; it never saves rows itself.
"""
