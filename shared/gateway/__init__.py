"""HTTP/JSON for every RPC, from the protobuf descriptors: the Connect protocol's unary
form (`POST /memlake.v1.Service/Method` with a JSON or binary protobuf body) translated to
the gRPC call, and an OpenAPI description generated from the same descriptors."""
