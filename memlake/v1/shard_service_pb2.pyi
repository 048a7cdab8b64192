from memlake.v1 import memory_pb2 as _memory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchCandidatesRequest(_message.Message):
    __slots__ = ("types", "user_id", "agent_id", "session_id", "start_time", "end_time", "include_history", "query_vector", "query", "want", "now", "min_seq")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    QUERY_VECTOR_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    WANT_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[_memory_pb2.MemoryType]
    user_id: str
    agent_id: str
    session_id: str
    start_time: float
    end_time: float
    include_history: bool
    query_vector: bytes
    query: str
    want: int
    now: float
    min_seq: int
    def __init__(self, types: _Optional[_Iterable[_Union[_memory_pb2.MemoryType, str]]] = ..., user_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., session_id: _Optional[str] = ..., start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., include_history: _Optional[bool] = ..., query_vector: _Optional[bytes] = ..., query: _Optional[str] = ..., want: _Optional[int] = ..., now: _Optional[float] = ..., min_seq: _Optional[int] = ...) -> None: ...

class PartitionCandidates(_message.Message):
    __slots__ = ("tenant", "key", "exact", "ids", "dense", "lexical", "types", "has_time", "day", "when", "importance", "confidence", "conflicted", "speakers", "speaker_names", "asks")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    HAS_TIME_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONFLICTED_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_NAMES_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    key: str
    exact: bool
    ids: bytes
    dense: bytes
    lexical: bytes
    types: bytes
    has_time: bytes
    day: bytes
    when: bytes
    importance: bytes
    confidence: bytes
    conflicted: bytes
    speakers: _containers.RepeatedScalarFieldContainer[str]
    speaker_names: _containers.RepeatedScalarFieldContainer[str]
    asks: bytes
    def __init__(self, tenant: _Optional[str] = ..., key: _Optional[str] = ..., exact: _Optional[bool] = ..., ids: _Optional[bytes] = ..., dense: _Optional[bytes] = ..., lexical: _Optional[bytes] = ..., types: _Optional[bytes] = ..., has_time: _Optional[bytes] = ..., day: _Optional[bytes] = ..., when: _Optional[bytes] = ..., importance: _Optional[bytes] = ..., confidence: _Optional[bytes] = ..., conflicted: _Optional[bytes] = ..., speakers: _Optional[_Iterable[str]] = ..., speaker_names: _Optional[_Iterable[str]] = ..., asks: _Optional[bytes] = ...) -> None: ...

class SearchCandidatesResponse(_message.Message):
    __slots__ = ("partitions", "index_seq")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    INDEX_SEQ_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionCandidates]
    index_seq: int
    def __init__(self, partitions: _Optional[_Iterable[_Union[PartitionCandidates, _Mapping]]] = ..., index_seq: _Optional[int] = ...) -> None: ...
