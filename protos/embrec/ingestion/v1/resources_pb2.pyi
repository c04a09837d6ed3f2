import datetime

from embrec.common.v1 import common_pb2 as _common_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InteractionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERACTION_TYPE_UNSPECIFIED: _ClassVar[InteractionType]
    INTERACTION_TYPE_VIEW: _ClassVar[InteractionType]
    INTERACTION_TYPE_CLICK: _ClassVar[InteractionType]
    INTERACTION_TYPE_ADD_TO_CART: _ClassVar[InteractionType]
    INTERACTION_TYPE_PURCHASE: _ClassVar[InteractionType]
    INTERACTION_TYPE_RATING: _ClassVar[InteractionType]

class ImportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_FORMAT_UNSPECIFIED: _ClassVar[ImportFormat]
    IMPORT_FORMAT_CSV: _ClassVar[ImportFormat]
    IMPORT_FORMAT_JSON: _ClassVar[ImportFormat]

class ImportMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_MODE_UNSPECIFIED: _ClassVar[ImportMode]
    IMPORT_MODE_STRICT: _ClassVar[ImportMode]
    IMPORT_MODE_LENIENT: _ClassVar[ImportMode]

class UnknownItemPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_ITEM_POLICY_UNSPECIFIED: _ClassVar[UnknownItemPolicy]
    UNKNOWN_ITEM_POLICY_REJECT: _ClassVar[UnknownItemPolicy]
    UNKNOWN_ITEM_POLICY_SKIP: _ClassVar[UnknownItemPolicy]
    UNKNOWN_ITEM_POLICY_CREATE_PLACEHOLDER: _ClassVar[UnknownItemPolicy]

class UploadState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPLOAD_STATE_UNSPECIFIED: _ClassVar[UploadState]
    UPLOAD_STATE_PROCESSING: _ClassVar[UploadState]
    UPLOAD_STATE_SUCCEEDED: _ClassVar[UploadState]
    UPLOAD_STATE_FAILED: _ClassVar[UploadState]

class UploadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPLOAD_KIND_UNSPECIFIED: _ClassVar[UploadKind]
    UPLOAD_KIND_ITEMS: _ClassVar[UploadKind]
    UPLOAD_KIND_INTERACTIONS: _ClassVar[UploadKind]
INTERACTION_TYPE_UNSPECIFIED: InteractionType
INTERACTION_TYPE_VIEW: InteractionType
INTERACTION_TYPE_CLICK: InteractionType
INTERACTION_TYPE_ADD_TO_CART: InteractionType
INTERACTION_TYPE_PURCHASE: InteractionType
INTERACTION_TYPE_RATING: InteractionType
IMPORT_FORMAT_UNSPECIFIED: ImportFormat
IMPORT_FORMAT_CSV: ImportFormat
IMPORT_FORMAT_JSON: ImportFormat
IMPORT_MODE_UNSPECIFIED: ImportMode
IMPORT_MODE_STRICT: ImportMode
IMPORT_MODE_LENIENT: ImportMode
UNKNOWN_ITEM_POLICY_UNSPECIFIED: UnknownItemPolicy
UNKNOWN_ITEM_POLICY_REJECT: UnknownItemPolicy
UNKNOWN_ITEM_POLICY_SKIP: UnknownItemPolicy
UNKNOWN_ITEM_POLICY_CREATE_PLACEHOLDER: UnknownItemPolicy
UPLOAD_STATE_UNSPECIFIED: UploadState
UPLOAD_STATE_PROCESSING: UploadState
UPLOAD_STATE_SUCCEEDED: UploadState
UPLOAD_STATE_FAILED: UploadState
UPLOAD_KIND_UNSPECIFIED: UploadKind
UPLOAD_KIND_ITEMS: UploadKind
UPLOAD_KIND_INTERACTIONS: UploadKind

class Item(_message.Message):
    __slots__ = ("item_id", "title", "category", "price", "image_url", "attributes", "create_time", "update_time")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    category: str
    price: float
    image_url: str
    attributes: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ..., image_url: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("user_id", "item_id", "interaction_type", "timestamp", "value", "recommendation_id", "event_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    interaction_type: InteractionType
    timestamp: _timestamp_pb2.Timestamp
    value: float
    recommendation_id: str
    event_id: str
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., interaction_type: _Optional[_Union[InteractionType, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., recommendation_id: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...

class ItemBatch(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class InteractionBatch(_message.Message):
    __slots__ = ("interactions",)
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    interactions: _containers.RepeatedCompositeFieldContainer[Interaction]
    def __init__(self, interactions: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ...) -> None: ...

class ImportOptions(_message.Message):
    __slots__ = ("tenant_id", "format", "mode", "upload_id", "unknown_item_policy", "file_name", "validate_only")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_POLICY_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    format: ImportFormat
    mode: ImportMode
    upload_id: str
    unknown_item_policy: UnknownItemPolicy
    file_name: str
    validate_only: bool
    def __init__(self, tenant_id: _Optional[str] = ..., format: _Optional[_Union[ImportFormat, str]] = ..., mode: _Optional[_Union[ImportMode, str]] = ..., upload_id: _Optional[str] = ..., unknown_item_policy: _Optional[_Union[UnknownItemPolicy, str]] = ..., file_name: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class Upload(_message.Message):
    __slots__ = ("id", "tenant_id", "kind", "state", "format", "mode", "validate_only", "file_name", "rows_total", "rows_accepted", "rows_rejected", "rows_skipped", "errors", "errors_truncated", "content_sha256", "creator", "create_time", "complete_time", "data_quality")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ROWS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    ROWS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    DATA_QUALITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    kind: UploadKind
    state: UploadState
    format: ImportFormat
    mode: ImportMode
    validate_only: bool
    file_name: str
    rows_total: int
    rows_accepted: int
    rows_rejected: int
    rows_skipped: int
    errors: _containers.RepeatedCompositeFieldContainer[RowError]
    errors_truncated: bool
    content_sha256: str
    creator: str
    create_time: _timestamp_pb2.Timestamp
    complete_time: _timestamp_pb2.Timestamp
    data_quality: DataStats
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., kind: _Optional[_Union[UploadKind, str]] = ..., state: _Optional[_Union[UploadState, str]] = ..., format: _Optional[_Union[ImportFormat, str]] = ..., mode: _Optional[_Union[ImportMode, str]] = ..., validate_only: _Optional[bool] = ..., file_name: _Optional[str] = ..., rows_total: _Optional[int] = ..., rows_accepted: _Optional[int] = ..., rows_rejected: _Optional[int] = ..., rows_skipped: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[RowError, _Mapping]]] = ..., errors_truncated: _Optional[bool] = ..., content_sha256: _Optional[str] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data_quality: _Optional[_Union[DataStats, _Mapping]] = ...) -> None: ...

class RowError(_message.Message):
    __slots__ = ("row", "column", "reason", "message", "value")
    ROW_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    row: int
    column: str
    reason: str
    message: str
    value: str
    def __init__(self, row: _Optional[int] = ..., column: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class DataStats(_message.Message):
    __slots__ = ("tenant_id", "item_count", "user_count", "interaction_count", "interactions_by_type", "category_count", "top_categories", "density", "first_interaction_time", "last_interaction_time", "interactions_since_last_training", "compute_time", "duplicate_interaction_count", "cold_user_count", "cold_item_count", "problems")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOP_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    DENSITY_FIELD_NUMBER: _ClassVar[int]
    FIRST_INTERACTION_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_INTERACTION_TIME_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_SINCE_LAST_TRAINING_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TIME_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_INTERACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    COLD_USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    COLD_ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    item_count: int
    user_count: int
    interaction_count: int
    interactions_by_type: _containers.RepeatedCompositeFieldContainer[InteractionTypeCount]
    category_count: int
    top_categories: _containers.RepeatedCompositeFieldContainer[CategoryCount]
    density: float
    first_interaction_time: _timestamp_pb2.Timestamp
    last_interaction_time: _timestamp_pb2.Timestamp
    interactions_since_last_training: int
    compute_time: _timestamp_pb2.Timestamp
    duplicate_interaction_count: int
    cold_user_count: int
    cold_item_count: int
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., item_count: _Optional[int] = ..., user_count: _Optional[int] = ..., interaction_count: _Optional[int] = ..., interactions_by_type: _Optional[_Iterable[_Union[InteractionTypeCount, _Mapping]]] = ..., category_count: _Optional[int] = ..., top_categories: _Optional[_Iterable[_Union[CategoryCount, _Mapping]]] = ..., density: _Optional[float] = ..., first_interaction_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_interaction_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interactions_since_last_training: _Optional[int] = ..., compute_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duplicate_interaction_count: _Optional[int] = ..., cold_user_count: _Optional[int] = ..., cold_item_count: _Optional[int] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class InteractionTypeCount(_message.Message):
    __slots__ = ("interaction_type", "count")
    INTERACTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    interaction_type: InteractionType
    count: int
    def __init__(self, interaction_type: _Optional[_Union[InteractionType, str]] = ..., count: _Optional[int] = ...) -> None: ...

class CategoryCount(_message.Message):
    __slots__ = ("category", "count")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    category: str
    count: int
    def __init__(self, category: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Analytics(_message.Message):
    __slots__ = ("tenant_id", "time_range", "time_zone", "recommendations_served", "impressions", "clicks", "click_through_rate", "conversions", "conversion_rate", "attributed_revenue", "active_users", "popular_items", "daily", "active_users_approximate")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_SERVED_FIELD_NUMBER: _ClassVar[int]
    IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    CLICK_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_REVENUE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    POPULAR_ITEMS_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_APPROXIMATE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    time_range: _common_pb2.TimeRange
    time_zone: str
    recommendations_served: int
    impressions: int
    clicks: int
    click_through_rate: float
    conversions: int
    conversion_rate: float
    attributed_revenue: float
    active_users: int
    popular_items: _containers.RepeatedCompositeFieldContainer[PopularItemStat]
    daily: _containers.RepeatedCompositeFieldContainer[DailyMetrics]
    active_users_approximate: bool
    def __init__(self, tenant_id: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., time_zone: _Optional[str] = ..., recommendations_served: _Optional[int] = ..., impressions: _Optional[int] = ..., clicks: _Optional[int] = ..., click_through_rate: _Optional[float] = ..., conversions: _Optional[int] = ..., conversion_rate: _Optional[float] = ..., attributed_revenue: _Optional[float] = ..., active_users: _Optional[int] = ..., popular_items: _Optional[_Iterable[_Union[PopularItemStat, _Mapping]]] = ..., daily: _Optional[_Iterable[_Union[DailyMetrics, _Mapping]]] = ..., active_users_approximate: _Optional[bool] = ...) -> None: ...

class PopularItemStat(_message.Message):
    __slots__ = ("item_id", "title", "category", "interaction_count", "impressions", "clicks")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    category: str
    interaction_count: int
    impressions: int
    clicks: int
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., interaction_count: _Optional[int] = ..., impressions: _Optional[int] = ..., clicks: _Optional[int] = ...) -> None: ...

class DailyMetrics(_message.Message):
    __slots__ = ("date", "recommendations_served", "impressions", "clicks", "conversions", "interactions", "active_users", "attributed_revenue")
    DATE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_SERVED_FIELD_NUMBER: _ClassVar[int]
    IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_REVENUE_FIELD_NUMBER: _ClassVar[int]
    date: str
    recommendations_served: int
    impressions: int
    clicks: int
    conversions: int
    interactions: int
    active_users: int
    attributed_revenue: float
    def __init__(self, date: _Optional[str] = ..., recommendations_served: _Optional[int] = ..., impressions: _Optional[int] = ..., clicks: _Optional[int] = ..., conversions: _Optional[int] = ..., interactions: _Optional[int] = ..., active_users: _Optional[int] = ..., attributed_revenue: _Optional[float] = ...) -> None: ...
