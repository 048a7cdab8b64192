import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from memlake.v1 import memory_pb2 as _memory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConflictStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFLICT_STATUS_UNSPECIFIED: _ClassVar[ConflictStatus]
    CONFLICT_STATUS_OPEN: _ClassVar[ConflictStatus]
    CONFLICT_STATUS_RESOLVED: _ClassVar[ConflictStatus]
    CONFLICT_STATUS_DISMISSED: _ClassVar[ConflictStatus]

class ConflictKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFLICT_KIND_UNSPECIFIED: _ClassVar[ConflictKind]
    CONFLICT_KIND_VALUE: _ClassVar[ConflictKind]
    CONFLICT_KIND_SEMANTIC: _ClassVar[ConflictKind]

class ConflictResolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFLICT_RESOLUTION_UNSPECIFIED: _ClassVar[ConflictResolution]
    CONFLICT_RESOLUTION_KEEP_ONE: _ClassVar[ConflictResolution]
    CONFLICT_RESOLUTION_KEEP_BOTH: _ClassVar[ConflictResolution]
    CONFLICT_RESOLUTION_DISMISS: _ClassVar[ConflictResolution]
CONFLICT_STATUS_UNSPECIFIED: ConflictStatus
CONFLICT_STATUS_OPEN: ConflictStatus
CONFLICT_STATUS_RESOLVED: ConflictStatus
CONFLICT_STATUS_DISMISSED: ConflictStatus
CONFLICT_KIND_UNSPECIFIED: ConflictKind
CONFLICT_KIND_VALUE: ConflictKind
CONFLICT_KIND_SEMANTIC: ConflictKind
CONFLICT_RESOLUTION_UNSPECIFIED: ConflictResolution
CONFLICT_RESOLUTION_KEEP_ONE: ConflictResolution
CONFLICT_RESOLUTION_KEEP_BOTH: ConflictResolution
CONFLICT_RESOLUTION_DISMISS: ConflictResolution

class Fact(_message.Message):
    __slots__ = ("id", "scope", "subject", "predicate", "value", "typed_value", "confidence", "valid_from", "valid_to", "record_time", "record_end_time", "status", "sources", "memory_id", "key")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TYPED_VALUE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    RECORD_END_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: _memory_pb2.Scope
    subject: str
    predicate: str
    value: str
    typed_value: _struct_pb2.Value
    confidence: float
    valid_from: _timestamp_pb2.Timestamp
    valid_to: _timestamp_pb2.Timestamp
    record_time: _timestamp_pb2.Timestamp
    record_end_time: _timestamp_pb2.Timestamp
    status: _memory_pb2.FactStatus
    sources: _containers.RepeatedCompositeFieldContainer[_memory_pb2.Source]
    memory_id: str
    key: str
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., subject: _Optional[str] = ..., predicate: _Optional[str] = ..., value: _Optional[str] = ..., typed_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., confidence: _Optional[float] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., record_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[_memory_pb2.FactStatus, str]] = ..., sources: _Optional[_Iterable[_Union[_memory_pb2.Source, _Mapping]]] = ..., memory_id: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class AssertFactRequest(_message.Message):
    __slots__ = ("scope", "subject", "predicate", "value", "typed_value", "confidence", "valid_from", "valid_to", "source", "policy", "request_id", "importance", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TYPED_VALUE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: _memory_pb2.Scope
    subject: str
    predicate: str
    value: str
    typed_value: _struct_pb2.Value
    confidence: float
    valid_from: _timestamp_pb2.Timestamp
    valid_to: _timestamp_pb2.Timestamp
    source: _memory_pb2.Source
    policy: _memory_pb2.ConflictPolicy
    request_id: str
    importance: float
    reason: str
    def __init__(self, scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., subject: _Optional[str] = ..., predicate: _Optional[str] = ..., value: _Optional[str] = ..., typed_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., confidence: _Optional[float] = ..., valid_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[_Union[_memory_pb2.Source, _Mapping]] = ..., policy: _Optional[_Union[_memory_pb2.ConflictPolicy, str]] = ..., request_id: _Optional[str] = ..., importance: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class AssertFactResponse(_message.Message):
    __slots__ = ("fact", "outcome", "previous", "seq", "conflict_id")
    FACT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_ID_FIELD_NUMBER: _ClassVar[int]
    fact: Fact
    outcome: _memory_pb2.WriteOutcome
    previous: Fact
    seq: int
    conflict_id: str
    def __init__(self, fact: _Optional[_Union[Fact, _Mapping]] = ..., outcome: _Optional[_Union[_memory_pb2.WriteOutcome, str]] = ..., previous: _Optional[_Union[Fact, _Mapping]] = ..., seq: _Optional[int] = ..., conflict_id: _Optional[str] = ...) -> None: ...

class FactKey(_message.Message):
    __slots__ = ("scope", "subject", "predicate")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    scope: _memory_pb2.Scope
    subject: str
    predicate: str
    def __init__(self, scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., subject: _Optional[str] = ..., predicate: _Optional[str] = ...) -> None: ...

class GetFactRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: FactKey
    def __init__(self, key: _Optional[_Union[FactKey, _Mapping]] = ...) -> None: ...

class GetFactResponse(_message.Message):
    __slots__ = ("fact", "conflicted", "conflicting")
    FACT_FIELD_NUMBER: _ClassVar[int]
    CONFLICTED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTING_FIELD_NUMBER: _ClassVar[int]
    fact: Fact
    conflicted: bool
    conflicting: _containers.RepeatedCompositeFieldContainer[Fact]
    def __init__(self, fact: _Optional[_Union[Fact, _Mapping]] = ..., conflicted: _Optional[bool] = ..., conflicting: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ...) -> None: ...

class GetFactHistoryRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: FactKey
    def __init__(self, key: _Optional[_Union[FactKey, _Mapping]] = ...) -> None: ...

class GetFactHistoryResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[Fact]
    def __init__(self, versions: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ...) -> None: ...

class GetFactAsOfRequest(_message.Message):
    __slots__ = ("key", "valid_time", "record_time")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALID_TIME_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    key: FactKey
    valid_time: _timestamp_pb2.Timestamp
    record_time: _timestamp_pb2.Timestamp
    def __init__(self, key: _Optional[_Union[FactKey, _Mapping]] = ..., valid_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetFactAsOfResponse(_message.Message):
    __slots__ = ("fact",)
    FACT_FIELD_NUMBER: _ClassVar[int]
    fact: Fact
    def __init__(self, fact: _Optional[_Union[Fact, _Mapping]] = ...) -> None: ...

class ListFactsRequest(_message.Message):
    __slots__ = ("scope", "subject", "include_history", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _memory_pb2.Scope
    subject: str
    include_history: bool
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., subject: _Optional[str] = ..., include_history: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFactsResponse(_message.Message):
    __slots__ = ("facts", "next_page_token")
    FACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    next_page_token: str
    def __init__(self, facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RetractFactRequest(_message.Message):
    __slots__ = ("key", "reason", "actor", "request_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key: FactKey
    reason: str
    actor: str
    request_id: str
    def __init__(self, key: _Optional[_Union[FactKey, _Mapping]] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RetractFactResponse(_message.Message):
    __slots__ = ("fact", "seq")
    FACT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    fact: Fact
    seq: int
    def __init__(self, fact: _Optional[_Union[Fact, _Mapping]] = ..., seq: _Optional[int] = ...) -> None: ...

class Conflict(_message.Message):
    __slots__ = ("id", "scope", "kind", "status", "facts", "similarity", "create_time", "resolve_time", "resolved_by", "resolution_reason", "resolution")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_REASON_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    scope: _memory_pb2.Scope
    kind: ConflictKind
    status: ConflictStatus
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    similarity: float
    create_time: _timestamp_pb2.Timestamp
    resolve_time: _timestamp_pb2.Timestamp
    resolved_by: str
    resolution_reason: str
    resolution: ConflictResolution
    def __init__(self, id: _Optional[str] = ..., scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., kind: _Optional[_Union[ConflictKind, str]] = ..., status: _Optional[_Union[ConflictStatus, str]] = ..., facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., similarity: _Optional[float] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolve_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_by: _Optional[str] = ..., resolution_reason: _Optional[str] = ..., resolution: _Optional[_Union[ConflictResolution, str]] = ...) -> None: ...

class ListConflictsRequest(_message.Message):
    __slots__ = ("scope", "status", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _memory_pb2.Scope
    status: ConflictStatus
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., status: _Optional[_Union[ConflictStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConflictsResponse(_message.Message):
    __slots__ = ("conflicts", "next_page_token")
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conflicts: _containers.RepeatedCompositeFieldContainer[Conflict]
    next_page_token: str
    def __init__(self, conflicts: _Optional[_Iterable[_Union[Conflict, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResolveConflictRequest(_message.Message):
    __slots__ = ("conflict_id", "resolution", "keep_fact_id", "actor", "reason")
    CONFLICT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    KEEP_FACT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    conflict_id: str
    resolution: ConflictResolution
    keep_fact_id: str
    actor: str
    reason: str
    def __init__(self, conflict_id: _Optional[str] = ..., resolution: _Optional[_Union[ConflictResolution, str]] = ..., keep_fact_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResolveConflictResponse(_message.Message):
    __slots__ = ("conflict", "seq")
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    conflict: Conflict
    seq: int
    def __init__(self, conflict: _Optional[_Union[Conflict, _Mapping]] = ..., seq: _Optional[int] = ...) -> None: ...

class AddSubjectAliasRequest(_message.Message):
    __slots__ = ("scope", "alias", "subject", "actor", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: _memory_pb2.Scope
    alias: str
    subject: str
    actor: str
    reason: str
    def __init__(self, scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., alias: _Optional[str] = ..., subject: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AddSubjectAliasResponse(_message.Message):
    __slots__ = ("subject",)
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    def __init__(self, subject: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "time", "actor", "action", "fact_key", "fact_id", "reason", "details", "scope")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FACT_KEY_FIELD_NUMBER: _ClassVar[int]
    FACT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: _timestamp_pb2.Timestamp
    actor: str
    action: str
    fact_key: str
    fact_id: str
    reason: str
    details: _struct_pb2.Struct
    scope: _memory_pb2.Scope
    def __init__(self, id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., fact_key: _Optional[str] = ..., fact_id: _Optional[str] = ..., reason: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("scope", "subject", "predicate", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _memory_pb2.Scope
    subject: str
    predicate: str
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., subject: _Optional[str] = ..., predicate: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetConflictPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConflictPolicyResponse(_message.Message):
    __slots__ = ("policy", "tenant_default")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TENANT_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    policy: _memory_pb2.ConflictPolicy
    tenant_default: bool
    def __init__(self, policy: _Optional[_Union[_memory_pb2.ConflictPolicy, str]] = ..., tenant_default: _Optional[bool] = ...) -> None: ...

class SetConflictPolicyRequest(_message.Message):
    __slots__ = ("policy", "actor", "reason")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    policy: _memory_pb2.ConflictPolicy
    actor: str
    reason: str
    def __init__(self, policy: _Optional[_Union[_memory_pb2.ConflictPolicy, str]] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetConflictPolicyResponse(_message.Message):
    __slots__ = ("policy", "tenant_default")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TENANT_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    policy: _memory_pb2.ConflictPolicy
    tenant_default: bool
    def __init__(self, policy: _Optional[_Union[_memory_pb2.ConflictPolicy, str]] = ..., tenant_default: _Optional[bool] = ...) -> None: ...
