import datetime

from embrec.common.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ComponentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPONENT_STATE_UNSPECIFIED: _ClassVar[ComponentState]
    COMPONENT_STATE_SERVING: _ClassVar[ComponentState]
    COMPONENT_STATE_NOT_SERVING: _ClassVar[ComponentState]

class UsageGranularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_GRANULARITY_UNSPECIFIED: _ClassVar[UsageGranularity]
    USAGE_GRANULARITY_HOUR: _ClassVar[UsageGranularity]
    USAGE_GRANULARITY_DAY: _ClassVar[UsageGranularity]
COMPONENT_STATE_UNSPECIFIED: ComponentState
COMPONENT_STATE_SERVING: ComponentState
COMPONENT_STATE_NOT_SERVING: ComponentState
USAGE_GRANULARITY_UNSPECIFIED: UsageGranularity
USAGE_GRANULARITY_HOUR: UsageGranularity
USAGE_GRANULARITY_DAY: UsageGranularity

class GetPlatformStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PlatformStatus(_message.Message):
    __slots__ = ("status", "components")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    status: str
    components: _containers.RepeatedCompositeFieldContainer[ComponentHealth]
    def __init__(self, status: _Optional[str] = ..., components: _Optional[_Iterable[_Union[ComponentHealth, _Mapping]]] = ...) -> None: ...

class GetHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class HealthReport(_message.Message):
    __slots__ = ("components",)
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    components: _containers.RepeatedCompositeFieldContainer[ComponentHealth]
    def __init__(self, components: _Optional[_Iterable[_Union[ComponentHealth, _Mapping]]] = ...) -> None: ...

class ComponentHealth(_message.Message):
    __slots__ = ("component", "state", "optional", "message", "latency_ms")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    component: str
    state: ComponentState
    optional: bool
    message: str
    latency_ms: float
    def __init__(self, component: _Optional[str] = ..., state: _Optional[_Union[ComponentState, str]] = ..., optional: _Optional[bool] = ..., message: _Optional[str] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("tenant_id", "time_range", "granularity")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    time_range: _common_pb2.TimeRange
    granularity: UsageGranularity
    def __init__(self, tenant_id: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., granularity: _Optional[_Union[UsageGranularity, str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("tenant_id", "time_range", "granularity", "totals", "series", "methods")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    time_range: _common_pb2.TimeRange
    granularity: UsageGranularity
    totals: UsageCounts
    series: _containers.RepeatedCompositeFieldContainer[UsageBucket]
    methods: _containers.RepeatedCompositeFieldContainer[MethodUsage]
    def __init__(self, tenant_id: _Optional[str] = ..., time_range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., granularity: _Optional[_Union[UsageGranularity, str]] = ..., totals: _Optional[_Union[UsageCounts, _Mapping]] = ..., series: _Optional[_Iterable[_Union[UsageBucket, _Mapping]]] = ..., methods: _Optional[_Iterable[_Union[MethodUsage, _Mapping]]] = ...) -> None: ...

class UsageCounts(_message.Message):
    __slots__ = ("api_calls", "client_errors", "server_errors", "error_rate", "recommendations", "cache_hits", "cache_hit_rate", "mean_latency_ms")
    API_CALLS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    SERVER_ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    api_calls: int
    client_errors: int
    server_errors: int
    error_rate: float
    recommendations: int
    cache_hits: int
    cache_hit_rate: float
    mean_latency_ms: float
    def __init__(self, api_calls: _Optional[int] = ..., client_errors: _Optional[int] = ..., server_errors: _Optional[int] = ..., error_rate: _Optional[float] = ..., recommendations: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cache_hit_rate: _Optional[float] = ..., mean_latency_ms: _Optional[float] = ...) -> None: ...

class UsageBucket(_message.Message):
    __slots__ = ("start_time", "counts")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    counts: UsageCounts
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., counts: _Optional[_Union[UsageCounts, _Mapping]] = ...) -> None: ...

class MethodUsage(_message.Message):
    __slots__ = ("service", "method", "counts", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "latency_over_last_bound")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    P50_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P99_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_OVER_LAST_BOUND_FIELD_NUMBER: _ClassVar[int]
    service: str
    method: str
    counts: UsageCounts
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float
    latency_over_last_bound: bool
    def __init__(self, service: _Optional[str] = ..., method: _Optional[str] = ..., counts: _Optional[_Union[UsageCounts, _Mapping]] = ..., p50_latency_ms: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ..., p99_latency_ms: _Optional[float] = ..., latency_over_last_bound: _Optional[bool] = ...) -> None: ...
