"""Forms of the pages, one module per noun: hosts, profiles, changes; what they share is in common.

They check the shape of the input; whether a host, a profile or a change is acceptable is decided by the
service functions, whose errors the views put back next to these forms' fields.
"""
