"""ocirun: rootless, daemonless runner for OCI/Docker images on its own ptrace engine."""

__version__ = "0.1.0"
