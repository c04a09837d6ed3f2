from embrec.common.v1 import common_pb2 as _common_pb2
from embrec.ingestion.v1 import resources_pb2 as _resources_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportItemsRequest(_message.Message):
    __slots__ = ("options", "chunk", "items")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    options: _resources_pb2.ImportOptions
    chunk: bytes
    items: _resources_pb2.ItemBatch
    def __init__(self, options: _Optional[_Union[_resources_pb2.ImportOptions, _Mapping]] = ..., chunk: _Optional[bytes] = ..., items: _Optional[_Union[_resources_pb2.ItemBatch, _Mapping]] = ...) -> None: ...

class ImportInteractionsRequest(_message.Message):
    __slots__ = ("options", "chunk", "interactions")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    options: _resources_pb2.ImportOptions
    chunk: bytes
    interactions: _resources_pb2.InteractionBatch
    def __init__(self, options: _Optional[_Union[_resources_pb2.ImportOptions, _Mapping]] = ..., chunk: _Optional[bytes] = ..., interactions: _Optional[_Union[_resources_pb2.InteractionBatch, _Mapping]] = ...) -> None: ...

class ImportItemsCsvRequest(_message.Message):
    __slots__ = ("body", "tenant_id", "mode", "upload_id", "file_name", "validate_only")
    BODY_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    body: _httpbody_pb2.HttpBody
    tenant_id: str
    mode: _resources_pb2.ImportMode
    upload_id: str
    file_name: str
    validate_only: bool
    def __init__(self, body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ..., tenant_id: _Optional[str] = ..., mode: _Optional[_Union[_resources_pb2.ImportMode, str]] = ..., upload_id: _Optional[str] = ..., file_name: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class ImportInteractionsCsvRequest(_message.Message):
    __slots__ = ("body", "tenant_id", "mode", "upload_id", "file_name", "validate_only", "unknown_item_policy")
    BODY_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_POLICY_FIELD_NUMBER: _ClassVar[int]
    body: _httpbody_pb2.HttpBody
    tenant_id: str
    mode: _resources_pb2.ImportMode
    upload_id: str
    file_name: str
    validate_only: bool
    unknown_item_policy: _resources_pb2.UnknownItemPolicy
    def __init__(self, body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ..., tenant_id: _Optional[str] = ..., mode: _Optional[_Union[_resources_pb2.ImportMode, str]] = ..., upload_id: _Optional[str] = ..., file_name: _Optional[str] = ..., validate_only: _Optional[bool] = ..., unknown_item_policy: _Optional[_Union[_resources_pb2.UnknownItemPolicy, str]] = ...) -> None: ...

class GetUploadRequest(_message.Message):
    __slots__ = ("tenant_id", "upload_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    upload_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., upload_id: _Optional[str] = ...) -> None: ...

class ListUploadsRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token", "kind", "state")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    kind: _resources_pb2.UploadKind
    state: _resources_pb2.UploadState
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., kind: _Optional[_Union[_resources_pb2.UploadKind, str]] = ..., state: _Optional[_Union[_resources_pb2.UploadState, str]] = ...) -> None: ...

class ListUploadsResponse(_message.Message):
    __slots__ = ("uploads", "next_page_token")
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    uploads: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Upload]
    next_page_token: str
    def __init__(self, uploads: _Optional[_Iterable[_Union[_resources_pb2.Upload, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetUploadReportRequest(_message.Message):
    __slots__ = ("tenant_id", "upload_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    upload_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., upload_id: _Optional[str] = ...) -> None: ...

class TrackEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "events")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    events: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Interaction]
    def __init__(self, tenant_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_resources_pb2.Interaction, _Mapping]]] = ...) -> None: ...

class TrackEventsResponse(_message.Message):
    __slots__ = ("accepted_count", "errors")
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    accepted_count: int
    errors: _containers.RepeatedCompositeFieldContainer[EventError]
    def __init__(self, accepted_count: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[EventError, _Mapping]]] = ...) -> None: ...

class EventError(_message.Message):
    __slots__ = ("index", "field", "reason", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    field: str
    reason: str
    message: str
    def __init__(self, index: _Optional[int] = ..., field: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetDataStatsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetAnalyticsRequest(_message.Message):
    __slots__ = ("tenant_id", "time_range", "time_zone", "popular_items_limit")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    POPULAR_ITEMS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    time_range: _common_pb2.TimeRange
    time_zone: str
    popular_items_limit: int
    def __init__(self, tenant_id: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., time_zone: _Optional[str] = ..., popular_items_limit: _Optional[int] = ...) -> None: ...

class GetItemRequest(_message.Message):
    __slots__ = ("tenant_id", "item_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    item_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class ListItemsRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token", "category", "query")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    category: str
    query: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., category: _Optional[str] = ..., query: _Optional[str] = ...) -> None: ...

class ListItemsResponse(_message.Message):
    __slots__ = ("items", "next_page_token", "total_size")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Item]
    next_page_token: str
    total_size: int
    def __init__(self, items: _Optional[_Iterable[_Union[_resources_pb2.Item, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...
