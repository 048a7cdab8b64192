// Run by tests/test_typescript.py against a running suite: MEMLAKE_ADDR (gRPC),
// MEMLAKE_HTTP_URL (the HTTP/JSON gateway) and the credentials (MEMLAKE_API_KEY /
// MEMLAKE_TENANT) come from the environment.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Code,
  ConflictPolicy,
  ConnectError,
  MemoryType,
  WriteOutcome,
  PARTITION_HEADER,
  createMemlake,
  errorInfo,
  timestamp,
} from "../dist/index.js";

const user = `ts-${process.pid}`;

for (const protocol of ["grpc", "connect"]) {
  const baseUrl =
    protocol === "grpc" ? `http://${process.env.MEMLAKE_ADDR}` : process.env.MEMLAKE_HTTP_URL;
  const ml = createMemlake({ baseUrl, protocol });
  const scope = { userId: `${user}-${protocol}` };

  test(`${protocol}: the key is sent, and names the tenant`, async () => {
    const me = await ml.admin.getCaller({});
    assert.equal(me.method, "api_key");
    assert.equal(me.tenant, process.env.MEMLAKE_EXPECT_TENANT);
    const anonymous = createMemlake({ baseUrl, protocol, apiKey: "" });
    const err = await anonymous.admin.getCaller({}).then(() => assert.fail("expected 401"), (e) => e);
    assert.equal(ConnectError.from(err).code, Code.Unauthenticated);
  });

  test(`${protocol}: remember, then search finds it`, async () => {
    const r = await ml.ingest.remember({
      memory: {
        type: MemoryType.EVENT,
        content: "Deployed the payments service v3 to production",
        scope,
        occurTime: timestamp("2024-05-01T10:00:00Z"),
      },
    });
    assert.equal(r.outcome, WriteOutcome.CREATED);
    assert.ok(r.seq > 0n);
    const found = await ml.retrieval.searchMemories({
      query: "payments deploy",
      scope,
      minSeq: r.seq,
      topK: 5,
    });
    assert.equal(found.results[0].memory?.id, r.memory?.id);
    assert.equal(found.results[0].memory?.occurTime?.seconds, 1714557600n);
    const got = await ml.retrieval.getMemoryByKey({ type: MemoryType.BACKGROUND, scope, key: "nope" })
      .catch((e) => e);
    assert.equal(ConnectError.from(got).code, Code.NotFound);
  });

  test(`${protocol}: assert a fact, and a rejected one carries the current fact`, async () => {
    const a = await ml.versioning.assertFact({
      scope,
      subject: "alice",
      predicate: "lives_in",
      value: "Paris",
      validFrom: timestamp(new Date("2020-01-01")),
    });
    assert.equal(a.outcome, WriteOutcome.CREATED);
    const cur = await ml.versioning.getFact({ key: { scope, subject: "alice", predicate: "lives_in" } });
    assert.equal(cur.fact?.value, "Paris");
    const err = await ml.versioning
      .assertFact({
        scope,
        subject: "alice",
        predicate: "lives_in",
        value: "Rome",
        policy: ConflictPolicy.REJECT,
      })
      .then(() => assert.fail("expected FAILED_PRECONDITION"), (e) => e);
    const info = errorInfo(err);
    assert.equal(info.code, "FAILED_PRECONDITION");
    assert.equal(info.currentFact?.value, "Paris");
  });

  test(`${protocol}: user-scoped reads name their partition in a header, others do not`, async () => {
    const sent = [];
    const spy = (next) => async (req) => {
      sent.push([req.method.name, req.header.get(PARTITION_HEADER)]);
      return next(req);
    };
    const c = createMemlake({ baseUrl, protocol, tenant: "", interceptors: [spy] });
    await c.retrieval.searchMemories({ query: "payments deploy", scope });
    await c.retrieval.getContext({ scope, intent: "deploy" });
    await c.retrieval.searchMemories({ query: "payments deploy" });
    const want = `${process.env.MEMLAKE_EXPECT_TENANT}/u:${scope.userId}`;
    assert.deepEqual(
      sent.filter(([m]) => m !== "GetCaller"),
      [["SearchMemories", want], ["GetContext", want], ["SearchMemories", null]],
    );
    assert.equal(sent.filter(([m]) => m === "GetCaller").length, 1, "the tenant is asked once");
  });

  test(`${protocol}: an error's details name the field`, async () => {
    const err = await ml.retrieval
      .searchMemories({ query: "  ", scope })
      .then(() => assert.fail("expected INVALID_ARGUMENT"), (e) => e);
    assert.equal(ConnectError.from(err).code, Code.InvalidArgument);
    const info = errorInfo(err);
    assert.equal(info.code, "INVALID_ARGUMENT");
    assert.equal(info.reason, "INVALID_FIELD");
    assert.equal(info.field, "query");
    assert.deepEqual(info.violations.map((v) => v.field), ["query"]);
  });
}
