import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FallbackReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FALLBACK_REASON_UNSPECIFIED: _ClassVar[FallbackReason]
    FALLBACK_REASON_NO_MODEL: _ClassVar[FallbackReason]
    FALLBACK_REASON_INDEX_UNAVAILABLE: _ClassVar[FallbackReason]
    FALLBACK_REASON_UNKNOWN_USER: _ClassVar[FallbackReason]
    FALLBACK_REASON_UNKNOWN_ITEM: _ClassVar[FallbackReason]
    FALLBACK_REASON_MODEL_ERROR: _ClassVar[FallbackReason]

class IndexState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INDEX_STATE_UNSPECIFIED: _ClassVar[IndexState]
    INDEX_STATE_LOADING: _ClassVar[IndexState]
    INDEX_STATE_READY: _ClassVar[IndexState]
    INDEX_STATE_FAILED: _ClassVar[IndexState]
FALLBACK_REASON_UNSPECIFIED: FallbackReason
FALLBACK_REASON_NO_MODEL: FallbackReason
FALLBACK_REASON_INDEX_UNAVAILABLE: FallbackReason
FALLBACK_REASON_UNKNOWN_USER: FallbackReason
FALLBACK_REASON_UNKNOWN_ITEM: FallbackReason
FALLBACK_REASON_MODEL_ERROR: FallbackReason
INDEX_STATE_UNSPECIFIED: IndexState
INDEX_STATE_LOADING: IndexState
INDEX_STATE_READY: IndexState
INDEX_STATE_FAILED: IndexState

class RecommendationFilters(_message.Message):
    __slots__ = ("category", "categories", "exclude_categories", "min_price", "max_price", "item_ids", "exclude_item_ids", "exclude_seen")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    MIN_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    category: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_categories: _containers.RepeatedScalarFieldContainer[str]
    min_price: float
    max_price: float
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    exclude_seen: bool
    def __init__(self, category: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., exclude_categories: _Optional[_Iterable[str]] = ..., min_price: _Optional[float] = ..., max_price: _Optional[float] = ..., item_ids: _Optional[_Iterable[str]] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ..., exclude_seen: _Optional[bool] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("tenant_id", "user_id", "count", "filters", "recent_item_ids", "model_version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    user_id: str
    count: int
    filters: RecommendationFilters
    recent_item_ids: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    def __init__(self, tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ..., count: _Optional[int] = ..., filters: _Optional[_Union[RecommendationFilters, _Mapping]] = ..., recent_item_ids: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "title", "category", "price", "image_url")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    title: str
    category: str
    price: float
    image_url: str
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ..., image_url: _Optional[str] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model_version", "recommendation_id", "fallback", "fallback_reason")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    model_version: str
    recommendation_id: str
    fallback: bool
    fallback_reason: FallbackReason
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., recommendation_id: _Optional[str] = ..., fallback: _Optional[bool] = ..., fallback_reason: _Optional[_Union[FallbackReason, str]] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("tenant_id", "item_id", "count", "filters", "user_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    item_id: str
    count: int
    filters: RecommendationFilters
    user_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., item_id: _Optional[str] = ..., count: _Optional[int] = ..., filters: _Optional[_Union[RecommendationFilters, _Mapping]] = ..., user_id: _Optional[str] = ...) -> None: ...

class SimilarItemsResponse(_message.Message):
    __slots__ = ("items", "model_version", "recommendation_id", "fallback", "fallback_reason")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    model_version: str
    recommendation_id: str
    fallback: bool
    fallback_reason: FallbackReason
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., recommendation_id: _Optional[str] = ..., fallback: _Optional[bool] = ..., fallback_reason: _Optional[_Union[FallbackReason, str]] = ...) -> None: ...

class PopularItemsRequest(_message.Message):
    __slots__ = ("tenant_id", "count", "category")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    count: int
    category: str
    def __init__(self, tenant_id: _Optional[str] = ..., count: _Optional[int] = ..., category: _Optional[str] = ...) -> None: ...

class PopularItemsResponse(_message.Message):
    __slots__ = ("items", "recommendation_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    recommendation_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., recommendation_id: _Optional[str] = ...) -> None: ...

class GetIndexStatusRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetIndexStatusResponse(_message.Message):
    __slots__ = ("indexes",)
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    indexes: _containers.RepeatedCompositeFieldContainer[IndexStatus]
    def __init__(self, indexes: _Optional[_Iterable[_Union[IndexStatus, _Mapping]]] = ...) -> None: ...

class IndexStatus(_message.Message):
    __slots__ = ("tenant_id", "model_version", "state", "index_type", "item_count", "dimension", "shard_count", "devices", "memory_bytes", "load_time", "error_message", "replica")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    model_version: str
    state: IndexState
    index_type: str
    item_count: int
    dimension: int
    shard_count: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    memory_bytes: int
    load_time: _timestamp_pb2.Timestamp
    error_message: str
    replica: str
    def __init__(self, tenant_id: _Optional[str] = ..., model_version: _Optional[str] = ..., state: _Optional[_Union[IndexState, str]] = ..., index_type: _Optional[str] = ..., item_count: _Optional[int] = ..., dimension: _Optional[int] = ..., shard_count: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ..., memory_bytes: _Optional[int] = ..., load_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error_message: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...

class ReloadIndexesRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ReloadIndexesResponse(_message.Message):
    __slots__ = ("indexes",)
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    indexes: _containers.RepeatedCompositeFieldContainer[IndexStatus]
    def __init__(self, indexes: _Optional[_Iterable[_Union[IndexStatus, _Mapping]]] = ...) -> None: ...

class GetTrafficStatsRequest(_message.Message):
    __slots__ = ("tenant_id", "start_time", "end_time")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VariantStats(_message.Message):
    __slots__ = ("model_version", "traffic_percent", "served_count", "fallback_count", "clicked_count", "click_through_rate")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SERVED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CLICKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    CLICK_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    traffic_percent: int
    served_count: int
    fallback_count: int
    clicked_count: int
    click_through_rate: float
    def __init__(self, model_version: _Optional[str] = ..., traffic_percent: _Optional[int] = ..., served_count: _Optional[int] = ..., fallback_count: _Optional[int] = ..., clicked_count: _Optional[int] = ..., click_through_rate: _Optional[float] = ...) -> None: ...

class GetTrafficStatsResponse(_message.Message):
    __slots__ = ("variants", "deployment_id")
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[VariantStats]
    deployment_id: str
    def __init__(self, variants: _Optional[_Iterable[_Union[VariantStats, _Mapping]]] = ..., deployment_id: _Optional[str] = ...) -> None: ...
