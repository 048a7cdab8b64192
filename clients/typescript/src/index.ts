// A thin wrapper over the generated stubs (src/gen, from proto/ by `npm run generate`):
// credentials on every call, and the google.rpc details of an error decoded.
//
//   const ml = createMemlake({ baseUrl: "http://127.0.0.1:50051", apiKey: "..." });
//   const r = await ml.ingest.remember({ memory: { type: MemoryType.EVENT, content: "Deployed v2",
//     scope: { userId: "alice" }, occurTime: timestamp(new Date()) } });

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { AdminService } from "./gen/memlake/v1/admin_service_pb.js";
import { IngestService } from "./gen/memlake/v1/ingest_service_pb.js";
import { PrivacyService } from "./gen/memlake/v1/privacy_service_pb.js";
import { RetrievalService } from "./gen/memlake/v1/retrieval_service_pb.js";
import { FactSchema, VersioningService } from "./gen/memlake/v1/versioning_service_pb.js";

export * from "./gen/memlake/v1/memory_pb.js";
export * from "./gen/memlake/v1/admin_service_pb.js";
export * from "./gen/memlake/v1/privacy_service_pb.js";
export * from "./gen/memlake/v1/ingest_service_pb.js";
export * from "./gen/memlake/v1/retrieval_service_pb.js";
export * from "./gen/memlake/v1/versioning_service_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
export { create } from "@bufbuild/protobuf";

export interface MemlakeOptions {
  /** Where memlake is. gRPC (default): the all-in-one, e.g. "http://127.0.0.1:50051"
   * (default: http:// + $MEMLAKE_ADDR, else 127.0.0.1:50051). With protocol "connect": the
   * HTTP/JSON gateway, e.g. "http://127.0.0.1:8080". */
  baseUrl?: string;
  /** Separate services: where retrieval and versioning are (default: baseUrl). */
  retrievalUrl?: string;
  versioningUrl?: string;
  /** "grpc" (HTTP/2, default) or "connect" (HTTP/1.1 + JSON, through the gateway). */
  protocol?: "grpc" | "connect";
  /** Sent as `authorization: Bearer <key>`; default $MEMLAKE_API_KEY. */
  apiKey?: string;
  /** Sent as `x-memlake-tenant` where the server takes the tenant from a header; default
   * $MEMLAKE_TENANT. */
  tenant?: string;
  /** Deadline of each call (default 30 s). */
  timeoutMs?: number;
  interceptors?: Interceptor[];
}

export interface Memlake {
  ingest: Client<typeof IngestService>;
  /** Tenants, API keys, the caller's identity (served beside ingest). */
  admin: Client<typeof AdminService>;
  /** Erase, export and import a subject (served beside ingest). */
  privacy: Client<typeof PrivacyService>;
  retrieval: Client<typeof RetrievalService>;
  versioning: Client<typeof VersioningService>;
}

/** An interceptor that adds the credentials to every request. */
export function credentials(apiKey?: string, tenant?: string): Interceptor {
  return (next) => async (req) => {
    if (apiKey) req.header.set("authorization", `Bearer ${apiKey}`);
    if (tenant) req.header.set("x-memlake-tenant", tenant);
    return next(req);
  };
}

/** The request header that names a user-scoped query's index partition, "<tenant>/u:<user>",
 * so a service mesh can hash on it and send each partition's queries to the replica that
 * owns it (docs/scale.md). The same value the retrieval replicas compute. */
export const PARTITION_HEADER = "x-memlake-partition";

const SCOPED_READS = new Set(["SearchMemories", "GetContext", "GetMemoryByKey"]);

/** An interceptor that adds x-memlake-partition to user-scoped retrieval reads. The tenant
 * is `tenant` when given, else learned once from `caller` (GetCaller); empty if that fails. */
export function partitionHeader(
  tenant: string | undefined,
  caller: () => Promise<string>,
): Interceptor {
  let known: Promise<string> | undefined = tenant ? Promise.resolve(tenant) : undefined;
  return (next) => async (req) => {
    const userId = req.stream ? "" : (req.message as { scope?: { userId?: string } }).scope?.userId;
    if (userId && SCOPED_READS.has(req.method.name)) {
      known ??= caller().catch(() => "");
      req.header.set(PARTITION_HEADER, `${await known}/u:${userId}`);
    }
    return next(req);
  };
}

export function createMemlake(options: MemlakeOptions = {}): Memlake {
  const env = typeof process !== "undefined" ? process.env : {};
  const baseUrl = options.baseUrl ?? `http://${env.MEMLAKE_ADDR || "127.0.0.1:50051"}`;
  const tenant = options.tenant ?? env.MEMLAKE_TENANT;
  const interceptors = [credentials(options.apiKey ?? env.MEMLAKE_API_KEY, tenant)];
  const defaultTimeoutMs = options.timeoutMs ?? 30_000;
  const transport = (url: string, extra: Interceptor[] = []) => {
    const all = [...interceptors, ...extra, ...(options.interceptors ?? [])];
    return options.protocol === "connect"
      ? createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: all, defaultTimeoutMs })
      : createGrpcTransport({ baseUrl: url, interceptors: all, defaultTimeoutMs });
  };
  const main = transport(baseUrl);
  const admin = createClient(AdminService, main);
  const scoped = partitionHeader(tenant, async () => (await admin.getCaller({}, { timeoutMs: 5_000 })).tenant);
  return {
    ingest: createClient(IngestService, main),
    admin,
    privacy: createClient(PrivacyService, main),
    retrieval: createClient(RetrievalService, transport(options.retrievalUrl ?? baseUrl, [scoped])),
    versioning: createClient(
      VersioningService,
      options.versioningUrl ? transport(options.versioningUrl) : main,
    ),
  };
}

/** A Date as a protobuf Timestamp (occurTime, validFrom, ...). */
export function timestamp(d: Date | string): Timestamp {
  return timestampFromDate(typeof d === "string" ? new Date(d) : d);
}

export interface MemlakeErrorInfo {
  /** The gRPC status code name, e.g. "INVALID_ARGUMENT". */
  code: string;
  message: string;
  /** ErrorInfo.reason, e.g. "INVALID_FIELD". */
  reason: string;
  /** The offending request field, when the server named one. */
  field: string;
  /** BadRequest field violations. */
  violations: { field: string; description: string }[];
  /** For a fact rejected by the REJECT policy: the current version. */
  currentFact?: ReturnType<typeof create<typeof FactSchema>>;
}

/** Decodes the gRPC status details memlake attaches to an error (ErrorInfo, BadRequest,
 * the current Fact of a rejected assertion). */
export function errorInfo(err: unknown): MemlakeErrorInfo {
  const e = ConnectError.from(err);
  const info = e.findDetails(ErrorInfoSchema)[0];
  const bad = e.findDetails(BadRequestSchema)[0];
  return {
    code: Code[e.code]
      .replace(/([a-z])([A-Z])/g, "$1_$2")
      .toUpperCase(),
    message: e.rawMessage,
    reason: info?.reason ?? "",
    field: info?.metadata?.field ?? "",
    violations: (bad?.fieldViolations ?? []).map((v) => ({
      field: v.field,
      description: v.description,
    })),
    currentFact: e.findDetails(FactSchema)[0],
  };
}

export type { MessageInitShape };
