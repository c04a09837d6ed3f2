import datetime

from embrec.audit.v1 import resources_pb2 as _resources_pb2
from embrec.ingestion.v1 import resources_pb2 as _resources_pb2_1
from embrec.training.v1 import resources_pb2 as _resources_pb2_1_1
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InteractionSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERACTION_SOURCE_UNSPECIFIED: _ClassVar[InteractionSource]
    INTERACTION_SOURCE_UPLOAD: _ClassVar[InteractionSource]
    INTERACTION_SOURCE_TRACK: _ClassVar[InteractionSource]

class RecommendationSurface(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECOMMENDATION_SURFACE_UNSPECIFIED: _ClassVar[RecommendationSurface]
    RECOMMENDATION_SURFACE_RECOMMEND: _ClassVar[RecommendationSurface]
    RECOMMENDATION_SURFACE_SIMILAR_ITEMS: _ClassVar[RecommendationSurface]
    RECOMMENDATION_SURFACE_POPULAR_ITEMS: _ClassVar[RecommendationSurface]
INTERACTION_SOURCE_UNSPECIFIED: InteractionSource
INTERACTION_SOURCE_UPLOAD: InteractionSource
INTERACTION_SOURCE_TRACK: InteractionSource
RECOMMENDATION_SURFACE_UNSPECIFIED: RecommendationSurface
RECOMMENDATION_SURFACE_RECOMMEND: RecommendationSurface
RECOMMENDATION_SURFACE_SIMILAR_ITEMS: RecommendationSurface
RECOMMENDATION_SURFACE_POPULAR_ITEMS: RecommendationSurface

class EventEnvelope(_message.Message):
    __slots__ = ("event_id", "event_type", "tenant_id", "occurred_time", "request_id", "producer", "payload", "traceparent")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_type: str
    tenant_id: str
    occurred_time: _timestamp_pb2.Timestamp
    request_id: str
    producer: str
    payload: _any_pb2.Any
    traceparent: str
    def __init__(self, event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., tenant_id: _Optional[str] = ..., occurred_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., producer: _Optional[str] = ..., payload: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...

class InteractionsRecorded(_message.Message):
    __slots__ = ("interactions", "source", "upload_id", "columns")
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    interactions: _containers.RepeatedCompositeFieldContainer[_resources_pb2_1.Interaction]
    source: InteractionSource
    upload_id: str
    columns: InteractionColumns
    def __init__(self, interactions: _Optional[_Iterable[_Union[_resources_pb2_1.Interaction, _Mapping]]] = ..., source: _Optional[_Union[InteractionSource, str]] = ..., upload_id: _Optional[str] = ..., columns: _Optional[_Union[InteractionColumns, _Mapping]] = ...) -> None: ...

class InteractionColumns(_message.Message):
    __slots__ = ("user_ids", "item_ids", "interaction_types", "timestamp_micros", "value_positions", "values", "recommendation_ids", "event_ids")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_TYPES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MICROS_FIELD_NUMBER: _ClassVar[int]
    VALUE_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_IDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    interaction_types: _containers.RepeatedScalarFieldContainer[_resources_pb2_1.InteractionType]
    timestamp_micros: _containers.RepeatedScalarFieldContainer[int]
    value_positions: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    recommendation_ids: _containers.RepeatedScalarFieldContainer[str]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., item_ids: _Optional[_Iterable[str]] = ..., interaction_types: _Optional[_Iterable[_Union[_resources_pb2_1.InteractionType, str]]] = ..., timestamp_micros: _Optional[_Iterable[int]] = ..., value_positions: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., recommendation_ids: _Optional[_Iterable[str]] = ..., event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CatalogChanged(_message.Message):
    __slots__ = ("upserted_items", "deleted_item_ids", "upload_id", "item_count")
    UPSERTED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    DELETED_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    upserted_items: _containers.RepeatedCompositeFieldContainer[_resources_pb2_1.Item]
    deleted_item_ids: _containers.RepeatedScalarFieldContainer[str]
    upload_id: str
    item_count: int
    def __init__(self, upserted_items: _Optional[_Iterable[_Union[_resources_pb2_1.Item, _Mapping]]] = ..., deleted_item_ids: _Optional[_Iterable[str]] = ..., upload_id: _Optional[str] = ..., item_count: _Optional[int] = ...) -> None: ...

class AuditRecorded(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _resources_pb2.AuditEvent
    def __init__(self, event: _Optional[_Union[_resources_pb2.AuditEvent, _Mapping]] = ...) -> None: ...

class ModelDeployed(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: _resources_pb2_1_1.Deployment
    def __init__(self, deployment: _Optional[_Union[_resources_pb2_1_1.Deployment, _Mapping]] = ...) -> None: ...

class TrainingJobStateChanged(_message.Message):
    __slots__ = ("job_id", "previous_state", "state", "model_version", "error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    previous_state: _resources_pb2_1_1.TrainingJobState
    state: _resources_pb2_1_1.TrainingJobState
    model_version: str
    error: _status_pb2.Status
    def __init__(self, job_id: _Optional[str] = ..., previous_state: _Optional[_Union[_resources_pb2_1_1.TrainingJobState, str]] = ..., state: _Optional[_Union[_resources_pb2_1_1.TrainingJobState, str]] = ..., model_version: _Optional[str] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class ServedItem(_message.Message):
    __slots__ = ("item_id", "rank", "score")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    rank: int
    score: float
    def __init__(self, item_id: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class RecommendationServed(_message.Message):
    __slots__ = ("recommendation_id", "user_id", "items", "model_version", "fallback", "surface", "cache_hit", "served_time")
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    SERVED_TIME_FIELD_NUMBER: _ClassVar[int]
    recommendation_id: str
    user_id: str
    items: _containers.RepeatedCompositeFieldContainer[ServedItem]
    model_version: str
    fallback: bool
    surface: RecommendationSurface
    cache_hit: bool
    served_time: _timestamp_pb2.Timestamp
    def __init__(self, recommendation_id: _Optional[str] = ..., user_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ServedItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., fallback: _Optional[bool] = ..., surface: _Optional[_Union[RecommendationSurface, str]] = ..., cache_hit: _Optional[bool] = ..., served_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecommendationsServed(_message.Message):
    __slots__ = ("impressions",)
    IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    impressions: _containers.RepeatedCompositeFieldContainer[RecommendationServed]
    def __init__(self, impressions: _Optional[_Iterable[_Union[RecommendationServed, _Mapping]]] = ...) -> None: ...
