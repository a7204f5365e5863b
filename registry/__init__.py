"""OCI distribution client and archive sources (see registry/README.md).

Entry points: registry.pull.pull_image, registry.archive.load_archive,
registry.client.login, registry.auth.logout, registry.reference.parse_reference,
registry.platform.Platform; the store implements registry.types.BlobSink.
Submodules are imported on use, so `import registry` stays cheap.
"""
