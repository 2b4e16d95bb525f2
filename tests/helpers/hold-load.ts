import { HELD_HEADER } from "../../src/maintenance/gate.ts";
import type { Requester, UserJson } from "./http.ts";
import { jsonBody } from "./service.ts";

/** One answer a client got. */
export interface Answer {
  method: "GET" | "POST";
  status: number;
  /** Milliseconds from sending to the whole body. */
  ms: number;
  /** The `Maintenance-Held-Ms` header: how long the request was held (null: not held). */
  heldMs: number | null;
  retryAfter: string | null;
  /** The problem type of an error answer. */
  type: string | null;
  /** The email a POST sent. */
  email: string | null;
  /** The id of the user a POST created. */
  id: number | null;
}

/** What a run through one maintenance gives. */
export interface HoldRun {
  answers: Answer[];
  /** From the write turning maintenance on to the service having applied the write turning it off. */
  maintenanceMs: number;
}

/** How one maintenance is driven: writes of the key, each resolving once the service has applied it. */
export interface HoldScenario {
  app: Requester;
  clients: number;
  /** Prefix of every email written, unique to the run. */
  tag: string;
  /** How long maintenance stays on. */
  maintenanceMs: number;
  turnOn(): Promise<void>;
  turnOff(): Promise<void>;
}

/** A promise and the function that resolves it. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * Runs `clients` clients, each alternating `POST /users` (a unique email) and `GET /users/{its last
 * id}`, one request at a time, through one maintenance: every client answers once, maintenance is
 * turned on, stays on `maintenanceMs`, is turned off, and every client answers once more. A client
 * answered 503 sends nothing more until maintenance is off, as one honouring Retry-After would.
 */
export async function runThroughMaintenance(scenario: HoldScenario): Promise<HoldRun> {
  const { app, clients, tag } = scenario;
  const answers: Answer[] = [];
  const over = signal();
  let stopping = false;
  /** Clients that answered since the phase began; the phase's signal fires when all did. */
  let answered = new Set<number>();
  let phase = signal();
  const client = async (index: number) => {
    let lastId: number | null = null;
    for (let n = 0; !stopping; n++) {
      const write = n % 2 === 0 || lastId === null;
      const email = write ? `${tag}-${index}-${n}@hold.test` : null;
      const started = performance.now();
      const response = await app.request(
        write ? "/users" : `/users/${lastId}`,
        write ? jsonBody("POST", { name: `Client ${index}`, email }) : undefined,
      );
      const body = (await response.json()) as Partial<UserJson> & { type?: string };
      const held = response.headers.get(HELD_HEADER);
      answers.push({
        method: write ? "POST" : "GET",
        status: response.status,
        ms: performance.now() - started,
        heldMs: held === null ? null : Number(held),
        retryAfter: response.headers.get("retry-after"),
        type: body.type ?? null,
        email,
        id: write && response.status === 201 ? (body.id ?? null) : null,
      });
      if (write && response.status === 201 && body.id !== undefined) lastId = body.id;
      answered.add(index);
      if (answered.size === clients) phase.resolve();
      if (response.status === 503) await over.promise;
    }
  };
  const running = Array.from({ length: clients }, (_, index) => client(index));
  const nextPhase = () => {
    answered = new Set();
    phase = signal();
    return phase.promise;
  };
  try {
    await phase.promise;
    const on = performance.now();
    await scenario.turnOn();
    // The maintenance's length is the scenario's, counted from the write turning it on.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, on + scenario.maintenanceMs - performance.now())));
    await scenario.turnOff();
    const maintenanceMs = performance.now() - on;
    const after = nextPhase();
    over.resolve();
    await after;
    return { answers, maintenanceMs };
  } finally {
    stopping = true;
    over.resolve();
    await Promise.all(running);
  }
}
