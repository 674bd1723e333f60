"""Drift: managed fields of guests found holding something other than what approved changes put there.

``compare`` (pure: desired state against what libvirt and the kernel report), ``record`` (open, update and
resolve drift rows, audit them, tell open pages), ``verify`` (the sync's and the event watcher's way in),
``remediate`` (propose, or with a host's automatic re-assert apply, a change request that puts the desired
values back).
"""
