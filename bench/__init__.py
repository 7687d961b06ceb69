"""The benchmark of the foundation issue: each figure it names, measured beside its raw floor.

``python -m bench`` (``make bench``) builds a dataset of profiles, subscriptions and suppressions,
then times optin's own code against the same work written as plainly as the database driver
allows, so that every number comes with the ratio that says what the application layer costs.

This package must stay light to import: the floor measurements run in subprocesses that import
only the standard library and the driver, so their memory figures are not inflated by Flask.
"""
