import postgres from "postgres";

/** The PostgreSQL the integration tests use; each test file gets its own database on it. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** A database created for one test file. */
export interface TestDatabase {
  /** postgres:// URL of the new database. */
  url: string;
  name: string;
  /** A client on the new database for assertions (max 2). */
  sql: postgres.Sql;
  /** Closes the client and drops the database. */
  drop(): Promise<void>;
}

/**
 * Creates a fresh, empty database on {@link TEST_DATABASE_URL}. Fails loudly
 * when that server does not answer.
 */
export async function createTestDatabase(prefix = "test"): Promise<TestDatabase> {
  const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`);
  } catch (error) {
    await admin.end({ timeout: 1 });
    throw new Error(`cannot create a test database on ${TEST_DATABASE_URL}: ${(error as Error).message}`);
  }
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 2, onnotice: () => {} });
  return {
    url: url.toString(),
    name,
    sql,
    async drop() {
      await sql.end({ timeout: 1 });
      await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end({ timeout: 1 });
    },
  };
}
