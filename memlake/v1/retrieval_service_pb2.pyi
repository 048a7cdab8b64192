from memlake.v1 import memory_pb2 as _memory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetMemoryRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetMemoryResponse(_message.Message):
    __slots__ = ("memory",)
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    memory: _memory_pb2.Memory
    def __init__(self, memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ...) -> None: ...

class GetMemoryByKeyRequest(_message.Message):
    __slots__ = ("type", "scope", "key")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    type: _memory_pb2.MemoryType
    scope: _memory_pb2.Scope
    key: str
    def __init__(self, type: _Optional[_Union[_memory_pb2.MemoryType, str]] = ..., scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., key: _Optional[str] = ...) -> None: ...

class GetMemoryByKeyResponse(_message.Message):
    __slots__ = ("memory",)
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    memory: _memory_pb2.Memory
    def __init__(self, memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ...) -> None: ...

class ListMemoriesRequest(_message.Message):
    __slots__ = ("types", "scope", "time_range", "page_size", "page_token", "include_history")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[_memory_pb2.MemoryType]
    scope: _memory_pb2.Scope
    time_range: _memory_pb2.TimeRange
    page_size: int
    page_token: str
    include_history: bool
    def __init__(self, types: _Optional[_Iterable[_Union[_memory_pb2.MemoryType, str]]] = ..., scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., time_range: _Optional[_Union[_memory_pb2.TimeRange, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_history: _Optional[bool] = ...) -> None: ...

class ListMemoriesResponse(_message.Message):
    __slots__ = ("memories", "next_page_token")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[_memory_pb2.Memory]
    next_page_token: str
    def __init__(self, memories: _Optional[_Iterable[_Union[_memory_pb2.Memory, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SearchMemoriesRequest(_message.Message):
    __slots__ = ("query", "types", "scope", "time_range", "top_k", "min_seq", "include_history", "vector", "min_score")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    query: str
    types: _containers.RepeatedScalarFieldContainer[_memory_pb2.MemoryType]
    scope: _memory_pb2.Scope
    time_range: _memory_pb2.TimeRange
    top_k: int
    min_seq: int
    include_history: bool
    vector: _memory_pb2.Vector
    min_score: float
    def __init__(self, query: _Optional[str] = ..., types: _Optional[_Iterable[_Union[_memory_pb2.MemoryType, str]]] = ..., scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., time_range: _Optional[_Union[_memory_pb2.TimeRange, _Mapping]] = ..., top_k: _Optional[int] = ..., min_seq: _Optional[int] = ..., include_history: _Optional[bool] = ..., vector: _Optional[_Union[_memory_pb2.Vector, _Mapping]] = ..., min_score: _Optional[float] = ...) -> None: ...

class ScoreParts(_message.Message):
    __slots__ = ("dense", "lexical", "recency", "importance", "confidence")
    DENSE_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_FIELD_NUMBER: _ClassVar[int]
    RECENCY_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    dense: float
    lexical: float
    recency: float
    importance: float
    confidence: float
    def __init__(self, dense: _Optional[float] = ..., lexical: _Optional[float] = ..., recency: _Optional[float] = ..., importance: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("memory", "score", "parts", "conflicted")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTED_FIELD_NUMBER: _ClassVar[int]
    memory: _memory_pb2.Memory
    score: float
    parts: ScoreParts
    conflicted: bool
    def __init__(self, memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., score: _Optional[float] = ..., parts: _Optional[_Union[ScoreParts, _Mapping]] = ..., conflicted: _Optional[bool] = ...) -> None: ...

class SearchMemoriesResponse(_message.Message):
    __slots__ = ("results", "index_seq")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    INDEX_SEQ_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    index_seq: int
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., index_seq: _Optional[int] = ...) -> None: ...

class GetContextRequest(_message.Message):
    __slots__ = ("scope", "intent", "token_budget", "types", "min_seq")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    scope: _memory_pb2.Scope
    intent: str
    token_budget: int
    types: _containers.RepeatedScalarFieldContainer[_memory_pb2.MemoryType]
    min_seq: int
    def __init__(self, scope: _Optional[_Union[_memory_pb2.Scope, _Mapping]] = ..., intent: _Optional[str] = ..., token_budget: _Optional[int] = ..., types: _Optional[_Iterable[_Union[_memory_pb2.MemoryType, str]]] = ..., min_seq: _Optional[int] = ...) -> None: ...

class ContextItem(_message.Message):
    __slots__ = ("memory", "score", "tokens", "reason", "conflicted")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONFLICTED_FIELD_NUMBER: _ClassVar[int]
    memory: _memory_pb2.Memory
    score: float
    tokens: int
    reason: str
    conflicted: bool
    def __init__(self, memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., score: _Optional[float] = ..., tokens: _Optional[int] = ..., reason: _Optional[str] = ..., conflicted: _Optional[bool] = ...) -> None: ...

class GetContextResponse(_message.Message):
    __slots__ = ("items", "rendered", "token_count", "index_seq")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_SEQ_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ContextItem]
    rendered: str
    token_count: int
    index_seq: int
    def __init__(self, items: _Optional[_Iterable[_Union[ContextItem, _Mapping]]] = ..., rendered: _Optional[str] = ..., token_count: _Optional[int] = ..., index_seq: _Optional[int] = ...) -> None: ...
