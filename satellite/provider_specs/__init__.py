"""Each speech provider declared in one module: its config section, credentials, roles,
models and voices, setup checks, and loaders of its implementation under providers/.

Importing them loads no SDK: a loader imports its provider's module when the provider is used.
"""
