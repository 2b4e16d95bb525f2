import { createRoute, z } from "@hono/zod-openapi";
import { MaintenanceStatusSchema, maintenanceStatusJson } from "../health/health.schemas.ts";
import { createRouter, jsonContent, problem, retryAfterHeader } from "../http/openapi.ts";
import { HttpProblem } from "../http/problem.ts";
import type { MaintenanceObserver } from "../maintenance/manager.ts";
import { parseMaintenanceValue } from "../maintenance/value.ts";
import { type MaintenanceWriter, StoreUnavailableError } from "../maintenance/writer.ts";

/** Name of the bearer security scheme in the OpenAPI document. */
export const ADMIN_SECURITY_SCHEME = "adminToken";

/** How long a write waits for this instance to apply it before answering. */
const OBSERVE_TIMEOUT_MS = 5000;

const MaintenanceKeySchema = z
  .object({
    key: z.string(),
    value: z.string().nullable().openapi({ description: "The key's raw value; null when the key does not exist." }),
    revision: z.string(),
    maintenance: MaintenanceStatusSchema,
  })
  .openapi("MaintenanceKey");

const security = [{ [ADMIN_SECURITY_SCHEME]: [] }];
const tags = ["admin"];
const ok = (description: string) => jsonContent(MaintenanceKeySchema, description);
const unauthorized = problem("Missing or wrong bearer token.");
/** Seconds a client is asked to wait when etcd does not answer. */
const STORE_RETRY_AFTER_SECONDS = 5;
const storeUnavailable = {
  ...problem(
    "etcd, which holds the key, does not answer: `maintenance-store-unavailable` (nothing was written), or " +
      "`maintenance-write-outcome-unknown` (a write was sent but never confirmed: read the key).",
  ),
  headers: retryAfterHeader,
};

const getMaintenance = createRoute({
  method: "get",
  path: "/admin/maintenance",
  operationId: "getMaintenance",
  tags,
  security,
  summary: "Read the maintenance key and this instance's state",
  responses: { 200: ok("The key and the state."), 401: unauthorized, 503: storeUnavailable },
});

const putMaintenance = createRoute({
  method: "put",
  path: "/admin/maintenance",
  operationId: "putMaintenance",
  tags,
  security,
  summary: "Write the maintenance key",
  description:
    "Takes the same values as the etcd key: a word (`true`, `on`, `false`, `off`, ...) as text/plain, or a JSON " +
    'object such as `{"enabled":true,"reason":"disk upgrade","retry_after":120}`. With etcd, this writes the key ' +
    "for every instance. Answers once this instance has applied the write, or after 5 s with the phase it is in " +
    "(entering maintenance waits for running requests, up to the drain timeout).",
  request: {
    body: {
      required: true,
      content: {
        "text/plain": { schema: z.string().openapi({ example: "true" }) },
        "application/json": {
          schema: z
            .unknown()
            .openapi({ type: "object", example: { enabled: true, reason: "disk upgrade", retry_after: 120 } }),
        },
      },
    },
  },
  responses: {
    200: ok("Written and applied by this instance."),
    400: problem("Not a value the maintenance key understands."),
    401: unauthorized,
    413: problem("Body larger than 64 KiB."),
    415: problem("Body is neither text/plain nor application/json."),
    503: storeUnavailable,
  },
});

const deleteMaintenance = createRoute({
  method: "delete",
  path: "/admin/maintenance",
  operationId: "deleteMaintenance",
  tags,
  security,
  summary: "Delete the maintenance key (maintenance off)",
  responses: { 200: ok("Deleted and applied by this instance."), 401: unauthorized, 503: storeUnavailable },
});

/**
 * Runs a call on the key's store; etcd not answering is a 503 problem with Retry-After (invariant 9:
 * `maintenance-store-unavailable` when nothing was done, its own type when a write's outcome is unknown).
 */
async function fromStore<T>(call: () => Promise<T>, writes: boolean): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (!(error instanceof StoreUnavailableError)) throw error;
    const headers = { "Retry-After": String(STORE_RETRY_AFTER_SECONDS) };
    const unreachable = "etcd, which holds the maintenance key, is not reachable right now";
    if (error.outcome === "unknown") {
      throw new HttpProblem({
        status: 503,
        slug: "maintenance-write-outcome-unknown",
        title: "Service Unavailable",
        detail:
          "etcd, which holds the maintenance key, did not confirm the write: it may or may not have been applied. " +
          "Read the key before writing again.",
        headers,
      });
    }
    const detail = writes ? `${unreachable}: nothing was written.` : `${unreachable}.`;
    throw new HttpProblem({
      status: 503,
      slug: "maintenance-store-unavailable",
      title: "Service Unavailable",
      detail,
      headers,
    });
  }
}

/** `/admin/maintenance`: read and write the maintenance key over HTTP. */
export function adminRoutes(key: string, writer: MaintenanceWriter, manager: MaintenanceObserver) {
  const describe = async () => {
    const stored = await fromStore(() => writer.read(), false);
    const maintenance = maintenanceStatusJson(manager.status());
    return { key, value: stored.value, revision: String(stored.revision), maintenance };
  };
  const afterWrite = async (revision: number) => {
    await manager.applied(key, revision, OBSERVE_TIMEOUT_MS);
    return describe();
  };

  return createRouter()
    .openapi(getMaintenance, async (c) => c.json(await describe(), 200))
    .openapi(putMaintenance, async (c) => {
      const value = await c.req.text();
      const parsed = parseMaintenanceValue(value);
      if (!parsed.ok) {
        throw new HttpProblem({
          status: 400,
          slug: "invalid-maintenance-value",
          title: "Bad Request",
          detail: `Not a maintenance value: ${parsed.problem}.`,
          errors: [{ field: "body", message: parsed.problem }],
        });
      }
      return c.json(await afterWrite(await fromStore(() => writer.write(value), true)), 200);
    })
    .openapi(deleteMaintenance, async (c) =>
      c.json(await afterWrite(await fromStore(() => writer.clear(), true)), 200),
    );
}
