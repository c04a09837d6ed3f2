"""The service runtime: one grpc.aio server hosting any subset of embrec's services.

Submodules: ``server`` (lifecycle, health, reflection), ``interceptors`` (request id,
access log, error boundary, metrics), ``errors`` (domain error → google.rpc.Status),
``logs`` (JSON logs with secrets redacted), ``metrics``, ``tracing``, ``context``.
"""
