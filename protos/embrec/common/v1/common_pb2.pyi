import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_FIELD: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_PAGE_TOKEN: _ClassVar[ErrorReason]
    ERROR_REASON_CREDENTIAL_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_SCOPE_MISSING: _ClassVar[ErrorReason]
    ERROR_REASON_TENANT_MISMATCH: _ClassVar[ErrorReason]
    ERROR_REASON_TENANT_INACTIVE: _ClassVar[ErrorReason]
    ERROR_REASON_TENANT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_SLUG_TAKEN: _ClassVar[ErrorReason]
    ERROR_REASON_EMAIL_TAKEN: _ClassVar[ErrorReason]
    ERROR_REASON_LOGIN_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_RESOURCE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_RATE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_QUOTA_EXCEEDED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_STATE: _ClassVar[ErrorReason]
    ERROR_REASON_NO_MODEL: _ClassVar[ErrorReason]
    ERROR_REASON_ROWS_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_BACKEND_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_CHAIN_BROKEN: _ClassVar[ErrorReason]
    ERROR_REASON_DATA_QUALITY_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_QUALITY_GATE_FAILED: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_FIELD: ErrorReason
ERROR_REASON_INVALID_PAGE_TOKEN: ErrorReason
ERROR_REASON_CREDENTIAL_INVALID: ErrorReason
ERROR_REASON_SCOPE_MISSING: ErrorReason
ERROR_REASON_TENANT_MISMATCH: ErrorReason
ERROR_REASON_TENANT_INACTIVE: ErrorReason
ERROR_REASON_TENANT_NOT_FOUND: ErrorReason
ERROR_REASON_SLUG_TAKEN: ErrorReason
ERROR_REASON_EMAIL_TAKEN: ErrorReason
ERROR_REASON_LOGIN_FAILED: ErrorReason
ERROR_REASON_RESOURCE_NOT_FOUND: ErrorReason
ERROR_REASON_RATE_LIMITED: ErrorReason
ERROR_REASON_QUOTA_EXCEEDED: ErrorReason
ERROR_REASON_INVALID_STATE: ErrorReason
ERROR_REASON_NO_MODEL: ErrorReason
ERROR_REASON_ROWS_INVALID: ErrorReason
ERROR_REASON_BACKEND_UNAVAILABLE: ErrorReason
ERROR_REASON_CHAIN_BROKEN: ErrorReason
ERROR_REASON_DATA_QUALITY_FAILED: ErrorReason
ERROR_REASON_QUALITY_GATE_FAILED: ErrorReason

class TimeRange(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
