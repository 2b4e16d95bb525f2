/**
 * Development entry (`npm run dev`): the full service on a machine with
 * nothing but Node — an embedded PostgreSQL under .data/, an in-process
 * maintenance key toggled through the admin API — unless the environment
 * names real ones. Prints where it listens and how to toggle maintenance.
 */
import { main } from "./index.ts";

const randomToken = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

const env = {
  ...process.env,
  DATABASE_URL: process.env.DATABASE_URL ?? "embedded",
  ETCD_ENDPOINTS: process.env.ETCD_ENDPOINTS ?? "memory",
  ADMIN_TOKEN: process.env.ADMIN_TOKEN ?? randomToken(),
  HOST: process.env.HOST ?? "127.0.0.1",
  LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
};

const { url, config } = await main(env);
const admin = `${url}/admin/maintenance`;
const auth = `-H "Authorization: Bearer ${env.ADMIN_TOKEN}"`;
const database =
  config.database.kind === "embedded"
    ? `embedded PostgreSQL, data in ${config.database.dir}`
    : "PostgreSQL from DATABASE_URL";
const source =
  config.maintenanceSource.kind === "memory"
    ? "in-process key (ETCD_ENDPOINTS=memory)"
    : `etcd ${config.maintenanceSource.endpoints}`;
console.log(`
database-service is running (development)
  API          ${url}/users
  docs         ${url}/docs
  health       ${url}/health
  database     ${database}
  maintenance  ${source}
  admin token  ${env.ADMIN_TOKEN}

Toggle maintenance:
  curl -X PUT ${auth} -H "Content-Type: text/plain" -d true ${admin}
  curl -X PUT ${auth} -H "Content-Type: text/plain" -d false ${admin}
  curl ${auth} ${admin}
Stop with Ctrl-C.
`);
