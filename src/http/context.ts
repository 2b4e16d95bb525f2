/** Hono environment of the app: values middleware leaves for later stages. */
export interface AppEnv {
  Variables: {
    requestId: string;
  };
}
