import { hostname } from "node:os";
import type { Etcd3 } from "etcd3";
import type { Acknowledgement } from "../../src/maintenance/fleet.ts";
import { type ServiceProcess, spawnService, waitForStatus } from "./process.ts";

/** One instance of a fleet: its process and the name its acknowledgement carries. */
export interface FleetInstance {
  service: ServiceProcess;
  /** `<host>-<id>`, as in its acknowledgement. */
  name: string;
}

/**
 * Starts `count` instances (`bun src/index.ts`) with `env(i)` each, concurrently, and resolves once
 * every one answers `/health` 200, with their names.
 */
export async function startFleet(count: number, env: (i: number) => Record<string, string>): Promise<FleetInstance[]> {
  const services = await Promise.all(Array.from({ length: count }, (_, i) => spawnService(env(i))));
  try {
    await Promise.all(services.map((service) => waitForStatus(service, "/health", 200, 60_000)));
    const names = await Promise.all(services.map((service) => instanceName(service.baseUrl)));
    return services.map((service, i) => ({ service, name: names[i] as string }));
  } catch (error) {
    await stopFleet(services.map((service) => ({ service, name: "" })));
    throw error;
  }
}

/** SIGTERM to every instance still running; resolves once all have exited. */
export async function stopFleet(instances: FleetInstance[]): Promise<void> {
  for (const { service } of instances) if (service.proc.exitCode === null) service.proc.kill("SIGTERM");
  await Promise.all(instances.map(({ service }) => service.exited));
}

/** An instance's name: its database application_name carries its id. */
export async function instanceName(baseUrl: string): Promise<string> {
  const stats = (await (await fetch(`${baseUrl}/stats`)).json()) as { database: { application_name: string } };
  const id = stats.database.application_name.split(":")[1];
  return `${hostname().slice(0, 40)}-${id}`;
}

/** Every acknowledgement under `<key>/instances/` now, by instance name. */
export async function acknowledgements(client: Etcd3, key: string): Promise<Map<string, Acknowledgement>> {
  const values = await client.getAll().prefix(`${key}/instances/`).strings();
  return new Map(
    Object.values(values).map((raw) => {
      const ack = JSON.parse(raw) as Acknowledgement;
      return [ack.instance, ack];
    }),
  );
}
