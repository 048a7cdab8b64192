import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemoryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMORY_TYPE_UNSPECIFIED: _ClassVar[MemoryType]
    MEMORY_TYPE_BACKGROUND: _ClassVar[MemoryType]
    MEMORY_TYPE_FACT: _ClassVar[MemoryType]
    MEMORY_TYPE_EVENT: _ClassVar[MemoryType]
    MEMORY_TYPE_CONVERSATION: _ClassVar[MemoryType]
    MEMORY_TYPE_REFLECTION: _ClassVar[MemoryType]
    MEMORY_TYPE_SKILL: _ClassVar[MemoryType]

class FactStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACT_STATUS_UNSPECIFIED: _ClassVar[FactStatus]
    FACT_STATUS_CURRENT: _ClassVar[FactStatus]
    FACT_STATUS_SUPERSEDED: _ClassVar[FactStatus]
    FACT_STATUS_CONFLICTED: _ClassVar[FactStatus]
    FACT_STATUS_RETRACTED: _ClassVar[FactStatus]

class WriteOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WRITE_OUTCOME_UNSPECIFIED: _ClassVar[WriteOutcome]
    WRITE_OUTCOME_CREATED: _ClassVar[WriteOutcome]
    WRITE_OUTCOME_UPDATED: _ClassVar[WriteOutcome]
    WRITE_OUTCOME_DUPLICATE: _ClassVar[WriteOutcome]
    WRITE_OUTCOME_RECORDED_AS_HISTORY: _ClassVar[WriteOutcome]
    WRITE_OUTCOME_CONFLICT_QUEUED: _ClassVar[WriteOutcome]

class ConflictPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFLICT_POLICY_UNSPECIFIED: _ClassVar[ConflictPolicy]
    CONFLICT_POLICY_SUPERSEDE: _ClassVar[ConflictPolicy]
    CONFLICT_POLICY_REJECT: _ClassVar[ConflictPolicy]
    CONFLICT_POLICY_REVIEW: _ClassVar[ConflictPolicy]
MEMORY_TYPE_UNSPECIFIED: MemoryType
MEMORY_TYPE_BACKGROUND: MemoryType
MEMORY_TYPE_FACT: MemoryType
MEMORY_TYPE_EVENT: MemoryType
MEMORY_TYPE_CONVERSATION: MemoryType
MEMORY_TYPE_REFLECTION: MemoryType
MEMORY_TYPE_SKILL: MemoryType
FACT_STATUS_UNSPECIFIED: FactStatus
FACT_STATUS_CURRENT: FactStatus
FACT_STATUS_SUPERSEDED: FactStatus
FACT_STATUS_CONFLICTED: FactStatus
FACT_STATUS_RETRACTED: FactStatus
WRITE_OUTCOME_UNSPECIFIED: WriteOutcome
WRITE_OUTCOME_CREATED: WriteOutcome
WRITE_OUTCOME_UPDATED: WriteOutcome
WRITE_OUTCOME_DUPLICATE: WriteOutcome
WRITE_OUTCOME_RECORDED_AS_HISTORY: WriteOutcome
WRITE_OUTCOME_CONFLICT_QUEUED: WriteOutcome
CONFLICT_POLICY_UNSPECIFIED: ConflictPolicy
CONFLICT_POLICY_SUPERSEDE: ConflictPolicy
CONFLICT_POLICY_REJECT: ConflictPolicy
CONFLICT_POLICY_REVIEW: ConflictPolicy

class Scope(_message.Message):
    __slots__ = ("tenant", "user_id", "agent_id", "session_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    user_id: str
    agent_id: str
    session_id: str
    def __init__(self, tenant: _Optional[str] = ..., user_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("kind", "actor", "session_id", "message_id", "document_uri")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_URI_FIELD_NUMBER: _ClassVar[int]
    kind: str
    actor: str
    session_id: str
    message_id: str
    document_uri: str
    def __init__(self, kind: _Optional[str] = ..., actor: _Optional[str] = ..., session_id: _Optional[str] = ..., message_id: _Optional[str] = ..., document_uri: _Optional[str] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BackgroundAttributes(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class FactAttributes(_message.Message):
    __slots__ = ("subject", "predicate", "value", "typed_value", "confidence", "valid_from", "valid_to", "status", "fact_version_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TYPED_VALUE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FACT_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    predicate: str
    value: str
    typed_value: _struct_pb2.Value
    confidence: float
    valid_from: _timestamp_pb2.Timestamp
    valid_to: _timestamp_pb2.Timestamp
    status: FactStatus
    fact_version_id: str
    def __init__(self, subject: _Optional[str] = ..., predicate: _Optional[str] = ..., value: _Optional[str] = ..., typed_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., confidence: _Optional[float] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[FactStatus, str]] = ..., fact_version_id: _Optional[str] = ...) -> None: ...

class EventAttributes(_message.Message):
    __slots__ = ("kind", "location", "participants")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    location: str
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., location: _Optional[str] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class ConversationAttributes(_message.Message):
    __slots__ = ("role", "speaker", "turn_index")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    TURN_INDEX_FIELD_NUMBER: _ClassVar[int]
    role: str
    speaker: str
    turn_index: int
    def __init__(self, role: _Optional[str] = ..., speaker: _Optional[str] = ..., turn_index: _Optional[int] = ...) -> None: ...

class ReflectionAttributes(_message.Message):
    __slots__ = ("key", "confidence", "evidence_memory_ids")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_MEMORY_IDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    confidence: float
    evidence_memory_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., confidence: _Optional[float] = ..., evidence_memory_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SkillAttributes(_message.Message):
    __slots__ = ("name", "steps", "inputs", "outcome_notes", "revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_NOTES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    steps: _containers.RepeatedScalarFieldContainer[str]
    inputs: _containers.RepeatedScalarFieldContainer[str]
    outcome_notes: str
    revision: int
    def __init__(self, name: _Optional[str] = ..., steps: _Optional[_Iterable[str]] = ..., inputs: _Optional[_Iterable[str]] = ..., outcome_notes: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class Memory(_message.Message):
    __slots__ = ("id", "type", "scope", "content", "background", "fact", "event", "conversation", "reflection", "skill", "importance", "source", "create_time", "occur_time", "expire_time", "etag", "current", "vector")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    FACT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    REFLECTION_FIELD_NUMBER: _ClassVar[int]
    SKILL_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OCCUR_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: MemoryType
    scope: Scope
    content: str
    background: BackgroundAttributes
    fact: FactAttributes
    event: EventAttributes
    conversation: ConversationAttributes
    reflection: ReflectionAttributes
    skill: SkillAttributes
    importance: float
    source: Source
    create_time: _timestamp_pb2.Timestamp
    occur_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    etag: str
    current: bool
    vector: Vector
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[MemoryType, str]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., content: _Optional[str] = ..., background: _Optional[_Union[BackgroundAttributes, _Mapping]] = ..., fact: _Optional[_Union[FactAttributes, _Mapping]] = ..., event: _Optional[_Union[EventAttributes, _Mapping]] = ..., conversation: _Optional[_Union[ConversationAttributes, _Mapping]] = ..., reflection: _Optional[_Union[ReflectionAttributes, _Mapping]] = ..., skill: _Optional[_Union[SkillAttributes, _Mapping]] = ..., importance: _Optional[float] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occur_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., current: _Optional[bool] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("model", "values")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    model: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...
