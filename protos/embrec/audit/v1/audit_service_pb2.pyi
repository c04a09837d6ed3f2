import datetime

from embrec.audit.v1 import resources_pb2 as _resources_pb2
from embrec.common.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchAuditEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "actor", "action", "outcome", "time_range", "query", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    actor: str
    action: str
    outcome: _resources_pb2.AuditOutcome
    time_range: _common_pb2.TimeRange
    query: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., outcome: _Optional[_Union[_resources_pb2.AuditOutcome, str]] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., query: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchAuditEventsResponse(_message.Message):
    __slots__ = ("audit_events", "next_page_token")
    AUDIT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    audit_events: _containers.RepeatedCompositeFieldContainer[_resources_pb2.AuditEvent]
    next_page_token: str
    def __init__(self, audit_events: _Optional[_Iterable[_Union[_resources_pb2.AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportAuditEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "actor", "action", "outcome", "time_range", "query")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    actor: str
    action: str
    outcome: _resources_pb2.AuditOutcome
    time_range: _common_pb2.TimeRange
    query: str
    def __init__(self, tenant_id: _Optional[str] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., outcome: _Optional[_Union[_resources_pb2.AuditOutcome, str]] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., query: _Optional[str] = ...) -> None: ...

class VerifyChainRequest(_message.Message):
    __slots__ = ("start_sequence", "end_sequence")
    START_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    END_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    start_sequence: int
    end_sequence: int
    def __init__(self, start_sequence: _Optional[int] = ..., end_sequence: _Optional[int] = ...) -> None: ...

class VerifyChainResponse(_message.Message):
    __slots__ = ("valid", "events_checked", "first_broken_sequence", "first_broken_event_id", "expected_hash", "actual_hash", "verify_time")
    VALID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_HASH_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_HASH_FIELD_NUMBER: _ClassVar[int]
    VERIFY_TIME_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    events_checked: int
    first_broken_sequence: int
    first_broken_event_id: str
    expected_hash: str
    actual_hash: str
    verify_time: _timestamp_pb2.Timestamp
    def __init__(self, valid: _Optional[bool] = ..., events_checked: _Optional[int] = ..., first_broken_sequence: _Optional[int] = ..., first_broken_event_id: _Optional[str] = ..., expected_hash: _Optional[str] = ..., actual_hash: _Optional[str] = ..., verify_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_resources_pb2.AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_resources_pb2.AuditEvent, _Mapping]]] = ...) -> None: ...

class RecordEventsResponse(_message.Message):
    __slots__ = ("recorded_count", "last_sequence")
    RECORDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    recorded_count: int
    last_sequence: int
    def __init__(self, recorded_count: _Optional[int] = ..., last_sequence: _Optional[int] = ...) -> None: ...
