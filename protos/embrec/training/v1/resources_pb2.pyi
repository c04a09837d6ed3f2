import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_JOB_STATE_UNSPECIFIED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_QUEUED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_RUNNING: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_SUCCEEDED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_FAILED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_CANCELLING: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_CANCELLED: _ClassVar[TrainingJobState]

class TrainingTrigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_TRIGGER_UNSPECIFIED: _ClassVar[TrainingTrigger]
    TRAINING_TRIGGER_MANUAL: _ClassVar[TrainingTrigger]
    TRAINING_TRIGGER_SCHEDULE: _ClassVar[TrainingTrigger]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_ARCHIVED: _ClassVar[ModelState]

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_PENDING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ACTIVE: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_SUPERSEDED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_FAILED: _ClassVar[DeploymentState]

class DataQualitySeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_QUALITY_SEVERITY_UNSPECIFIED: _ClassVar[DataQualitySeverity]
    DATA_QUALITY_SEVERITY_INFO: _ClassVar[DataQualitySeverity]
    DATA_QUALITY_SEVERITY_WARNING: _ClassVar[DataQualitySeverity]
    DATA_QUALITY_SEVERITY_ERROR: _ClassVar[DataQualitySeverity]
TRAINING_JOB_STATE_UNSPECIFIED: TrainingJobState
TRAINING_JOB_STATE_QUEUED: TrainingJobState
TRAINING_JOB_STATE_RUNNING: TrainingJobState
TRAINING_JOB_STATE_SUCCEEDED: TrainingJobState
TRAINING_JOB_STATE_FAILED: TrainingJobState
TRAINING_JOB_STATE_CANCELLING: TrainingJobState
TRAINING_JOB_STATE_CANCELLED: TrainingJobState
TRAINING_TRIGGER_UNSPECIFIED: TrainingTrigger
TRAINING_TRIGGER_MANUAL: TrainingTrigger
TRAINING_TRIGGER_SCHEDULE: TrainingTrigger
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_ARCHIVED: ModelState
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_PENDING: DeploymentState
DEPLOYMENT_STATE_ACTIVE: DeploymentState
DEPLOYMENT_STATE_SUPERSEDED: DeploymentState
DEPLOYMENT_STATE_FAILED: DeploymentState
DATA_QUALITY_SEVERITY_UNSPECIFIED: DataQualitySeverity
DATA_QUALITY_SEVERITY_INFO: DataQualitySeverity
DATA_QUALITY_SEVERITY_WARNING: DataQualitySeverity
DATA_QUALITY_SEVERITY_ERROR: DataQualitySeverity

class Hyperparameters(_message.Message):
    __slots__ = ("embedding_dim", "num_layers", "epochs", "batch_size", "learning_rate", "l2_weight", "negatives_per_positive", "early_stopping_patience", "holdout_fraction", "seed", "max_duration")
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    L2_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVES_PER_POSITIVE_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_PATIENCE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    embedding_dim: int
    num_layers: int
    epochs: int
    batch_size: int
    learning_rate: float
    l2_weight: float
    negatives_per_positive: int
    early_stopping_patience: int
    holdout_fraction: float
    seed: int
    max_duration: _duration_pb2.Duration
    def __init__(self, embedding_dim: _Optional[int] = ..., num_layers: _Optional[int] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., l2_weight: _Optional[float] = ..., negatives_per_positive: _Optional[int] = ..., early_stopping_patience: _Optional[int] = ..., holdout_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("job_id", "state", "epoch", "total_epochs", "loss", "metrics", "eta", "message", "update_time")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: TrainingJobState
    epoch: int
    total_epochs: int
    loss: float
    metrics: _containers.ScalarMap[str, float]
    eta: _duration_pb2.Duration
    message: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[TrainingJobState, str]] = ..., epoch: _Optional[int] = ..., total_epochs: _Optional[int] = ..., loss: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., eta: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., message: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("id", "tenant_id", "state", "hyperparameters", "progress", "model_version", "error", "auto_deploy", "trigger", "schedule_id", "creator", "create_time", "start_time", "end_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AUTO_DEPLOY_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    state: TrainingJobState
    hyperparameters: Hyperparameters
    progress: TrainingProgress
    model_version: str
    error: _status_pb2.Status
    auto_deploy: bool
    trigger: TrainingTrigger
    schedule_id: str
    creator: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., state: _Optional[_Union[TrainingJobState, str]] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., progress: _Optional[_Union[TrainingProgress, _Mapping]] = ..., model_version: _Optional[str] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., auto_deploy: _Optional[bool] = ..., trigger: _Optional[_Union[TrainingTrigger, str]] = ..., schedule_id: _Optional[str] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelLineage(_message.Message):
    __slots__ = ("job_id", "data_hash", "config", "interaction_count", "user_count", "item_count", "data_snapshot_time", "trainer_version", "device")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_HASH_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATA_SNAPSHOT_TIME_FIELD_NUMBER: _ClassVar[int]
    TRAINER_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    data_hash: str
    config: Hyperparameters
    interaction_count: int
    user_count: int
    item_count: int
    data_snapshot_time: _timestamp_pb2.Timestamp
    trainer_version: str
    device: str
    def __init__(self, job_id: _Optional[str] = ..., data_hash: _Optional[str] = ..., config: _Optional[_Union[Hyperparameters, _Mapping]] = ..., interaction_count: _Optional[int] = ..., user_count: _Optional[int] = ..., item_count: _Optional[int] = ..., data_snapshot_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trainer_version: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("version", "tenant_id", "state", "metrics", "lineage", "artifact_uri", "traffic_percent", "create_time")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    version: str
    tenant_id: str
    state: ModelState
    metrics: _containers.ScalarMap[str, float]
    lineage: ModelLineage
    artifact_uri: str
    traffic_percent: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[str] = ..., tenant_id: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., lineage: _Optional[_Union[ModelLineage, _Mapping]] = ..., artifact_uri: _Optional[str] = ..., traffic_percent: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrafficSplit(_message.Message):
    __slots__ = ("model_version", "percent")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    percent: int
    def __init__(self, model_version: _Optional[str] = ..., percent: _Optional[int] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("id", "tenant_id", "traffic_split", "state", "previous_deployment_id", "forced", "rollback", "reason", "creator", "create_time", "activate_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SPLIT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    traffic_split: _containers.RepeatedCompositeFieldContainer[TrafficSplit]
    state: DeploymentState
    previous_deployment_id: str
    forced: bool
    rollback: bool
    reason: str
    creator: str
    create_time: _timestamp_pb2.Timestamp
    activate_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., traffic_split: _Optional[_Iterable[_Union[TrafficSplit, _Mapping]]] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., previous_deployment_id: _Optional[str] = ..., forced: _Optional[bool] = ..., rollback: _Optional[bool] = ..., reason: _Optional[str] = ..., creator: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "interval", "min_new_interactions", "hyperparameters", "auto_deploy", "next_run_time", "last_run_time", "last_job_id", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MIN_NEW_INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    AUTO_DEPLOY_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    interval: _duration_pb2.Duration
    min_new_interactions: int
    hyperparameters: Hyperparameters
    auto_deploy: bool
    next_run_time: _timestamp_pb2.Timestamp
    last_run_time: _timestamp_pb2.Timestamp
    last_job_id: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_new_interactions: _Optional[int] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., auto_deploy: _Optional[bool] = ..., next_run_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_run_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_job_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DataQualityIssue(_message.Message):
    __slots__ = ("check", "severity", "message", "observed", "threshold")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    check: str
    severity: DataQualitySeverity
    message: str
    observed: float
    threshold: float
    def __init__(self, check: _Optional[str] = ..., severity: _Optional[_Union[DataQualitySeverity, str]] = ..., message: _Optional[str] = ..., observed: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class DataQualityReport(_message.Message):
    __slots__ = ("tenant_id", "passed", "issues", "interaction_count", "user_count", "item_count", "check_time")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    INTERACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHECK_TIME_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    passed: bool
    issues: _containers.RepeatedCompositeFieldContainer[DataQualityIssue]
    interaction_count: int
    user_count: int
    item_count: int
    check_time: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., passed: _Optional[bool] = ..., issues: _Optional[_Iterable[_Union[DataQualityIssue, _Mapping]]] = ..., interaction_count: _Optional[int] = ..., user_count: _Optional[int] = ..., item_count: _Optional[int] = ..., check_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
