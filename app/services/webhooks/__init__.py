"""Outgoing webhooks (issue 15): endpoints of the sending platform that receive every status
change as a POST signed the Standard Webhooks way.

- ``endpoints``: add, edit, pause, resume, delete an endpoint; queue a test event.
- ``queueing``: a delivery queued in the transaction of the change it announces.
- ``delivery``: claim, build, sign, send, retry; in order per profile.
- ``signing``: the three headers; ``transport``: one POST that no DNS answer can aim inward.
"""
