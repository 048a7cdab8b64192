from memlake.v1 import memory_pb2 as _memory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RememberRequest(_message.Message):
    __slots__ = ("memory", "request_id", "conflict_policy")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_POLICY_FIELD_NUMBER: _ClassVar[int]
    memory: _memory_pb2.Memory
    request_id: str
    conflict_policy: _memory_pb2.ConflictPolicy
    def __init__(self, memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., request_id: _Optional[str] = ..., conflict_policy: _Optional[_Union[_memory_pb2.ConflictPolicy, str]] = ...) -> None: ...

class RememberResponse(_message.Message):
    __slots__ = ("memory", "seq", "outcome")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    memory: _memory_pb2.Memory
    seq: int
    outcome: _memory_pb2.WriteOutcome
    def __init__(self, memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., seq: _Optional[int] = ..., outcome: _Optional[_Union[_memory_pb2.WriteOutcome, str]] = ...) -> None: ...

class RememberBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RememberRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RememberRequest, _Mapping]]] = ...) -> None: ...

class RememberResult(_message.Message):
    __slots__ = ("index", "error", "memory", "seq", "outcome")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    index: int
    error: _memory_pb2.ItemError
    memory: _memory_pb2.Memory
    seq: int
    outcome: _memory_pb2.WriteOutcome
    def __init__(self, index: _Optional[int] = ..., error: _Optional[_Union[_memory_pb2.ItemError, _Mapping]] = ..., memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., seq: _Optional[int] = ..., outcome: _Optional[_Union[_memory_pb2.WriteOutcome, str]] = ...) -> None: ...

class RememberBatchResponse(_message.Message):
    __slots__ = ("results", "seq")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RememberResult]
    seq: int
    def __init__(self, results: _Optional[_Iterable[_Union[RememberResult, _Mapping]]] = ..., seq: _Optional[int] = ...) -> None: ...

class StreamRememberRequest(_message.Message):
    __slots__ = ("memory", "request_id", "conflict_policy")
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_POLICY_FIELD_NUMBER: _ClassVar[int]
    memory: _memory_pb2.Memory
    request_id: str
    conflict_policy: _memory_pb2.ConflictPolicy
    def __init__(self, memory: _Optional[_Union[_memory_pb2.Memory, _Mapping]] = ..., request_id: _Optional[str] = ..., conflict_policy: _Optional[_Union[_memory_pb2.ConflictPolicy, str]] = ...) -> None: ...

class StreamRememberResponse(_message.Message):
    __slots__ = ("accepted", "failed", "results", "seq")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    failed: int
    results: _containers.RepeatedCompositeFieldContainer[RememberResult]
    seq: int
    def __init__(self, accepted: _Optional[int] = ..., failed: _Optional[int] = ..., results: _Optional[_Iterable[_Union[RememberResult, _Mapping]]] = ..., seq: _Optional[int] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("id", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...
