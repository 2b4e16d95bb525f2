import { Hono } from "hono";
import { HttpProblem, problemResponse } from "../../src/http/problem.ts";
import type { Gate } from "../../src/maintenance/gate.ts";

/** A request the gate admitted, held in its handler until released. */
export interface HeldRequest {
  response: Promise<Response>;
  release(): void;
}

/**
 * A tiny app behind `gate` whose one route, `/slow`, runs until the test releases it;
 * refusals are answered as the service answers them (problem+json, with their headers).
 */
export function gatedApp(gate: Gate) {
  let held: (release: () => void) => void = () => {};
  const app = new Hono()
    .use(gate.middleware())
    .get("/slow", async (c) => {
      await new Promise<void>((resolve) => held(resolve));
      return c.text("done");
    })
    .onError((error, c) =>
      error instanceof HttpProblem ? problemResponse(c, error) : new Response(null, { status: 500 }),
    );
  /** Sends a request the gate admits; resolves once its handler runs. */
  const admit = async (): Promise<HeldRequest> => {
    let release: () => void = () => {};
    const inHandler = new Promise<void>((resolve) => {
      held = (releaseHandler) => {
        release = releaseHandler;
        resolve();
      };
    });
    const response = Promise.resolve(app.request("/slow"));
    await inHandler;
    return { response, release: () => release() };
  };
  return { app, admit };
}
