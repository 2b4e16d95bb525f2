import type { WriteAdmission } from "../maintenance/gate.ts";

/** Hono environment of the app: values middleware leaves for later stages. */
export interface AppEnv {
  Variables: {
    requestId: string;
    /** Set by the gate only for a request sent through the bypass; otherwise writes ask the gate itself. */
    writeAdmission?: WriteAdmission;
  };
}
