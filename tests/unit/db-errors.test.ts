import { describe, expect, test } from "bun:test";
import postgres from "postgres";
import {
  DatabaseReadOnlyError,
  DatabaseUnavailableError,
  isOperational,
  isStaleConnection,
  isStatementError,
  translateDatabaseError,
} from "../../src/db/errors.ts";

/** An error as postgres.js reports a PostgreSQL ErrorResponse. */
const postgresError = (code: string, severity = "ERROR") =>
  new postgres.PostgresError({ code, severity, message: `sqlstate ${code}` } as unknown as string);

/** An error as postgres.js or a socket reports a failed connection. */
const driverError = (code: string) => Object.assign(new Error(code), { code });

describe("isOperational: which database errors answer 503", () => {
  const operational: [string, string][] = [
    ["57014", "statement timeout or cancel"],
    ["28000", "login refused: role disabled, pg_hba"],
    ["28P01", "password rotated"],
    ["3D000", "database missing"],
    ["53300", "too many connections"],
    ["53100", "disk full"],
    ["53200", "out of memory"],
    ["57P01", "admin shutdown"],
    ["57P02", "crash shutdown"],
    ["57P03", "cannot connect now"],
    ["57P04", "database dropped"],
    ["57P05", "idle session timeout"],
    ["08006", "connection failure"],
    ["08001", "cannot establish a connection"],
    ["58030", "I/O error"],
    ["25P03", "idle-in-transaction timeout"],
    ["40001", "serialization failure"],
    ["40P01", "deadlock"],
    ["55P03", "lock not available"],
    ["42501", "privilege revoked"],
  ];
  for (const [code, what] of operational) {
    test(`${code} (${what}) is operational`, () => {
      expect(isOperational(postgresError(code))).toBe(true);
    });
  }

  const ours: [string, string][] = [
    ["23505", "unique violation: mapped to 409 by the repository"],
    ["42601", "syntax error"],
    ["42P01", "undefined table"],
    ["0A000", "feature not supported"],
    ["XX000", "PostgreSQL internal error"],
    ["XX001", "data corrupted"],
    ["22001", "value too long"],
  ];
  for (const [code, what] of ours) {
    test(`${code} (${what}) is not`, () => {
      expect(isOperational(postgresError(code))).toBe(false);
    });
  }

  test("driver and socket connection failures are operational; other driver errors and plain errors are not", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "CONNECT_TIMEOUT", "CONNECTION_CLOSED", "CONNECTION_DESTROYED"]) {
      expect(isOperational(driverError(code))).toBe(true);
    }
    expect(isOperational(driverError("UNSAFE_TRANSACTION"))).toBe(false);
    expect(isOperational(driverError("MAX_PARAMETERS_EXCEEDED"))).toBe(false);
    expect(isOperational(new Error("no code"))).toBe(false);
    expect(isOperational(null)).toBe(false);
  });
});

describe("isStatementError: whether PostgreSQL answered (and so ended the transaction)", () => {
  test("an ERROR response is; a FATAL one, a connection failure or a plain error is not", () => {
    expect(isStatementError(postgresError("40001"))).toBe(true);
    expect(isStatementError(postgresError("57P01", "FATAL"))).toBe(false);
    expect(isStatementError(driverError("CONNECTION_CLOSED"))).toBe(false);
    expect(isStatementError(new Error("no answer"))).toBe(false);
  });
});

describe("isStaleConnection: whether work may run once more on a new connection", () => {
  test("a connection closed or reset under it, or a server restart (57P01), is stale", () => {
    for (const error of [
      driverError("CONNECTION_CLOSED"),
      driverError("ECONNRESET"),
      postgresError("57P01", "FATAL"),
    ]) {
      expect(isStaleConnection(error)).toBe(true);
    }
  });

  test("a refused connection, a timeout or a statement's error is not", () => {
    for (const error of [driverError("ECONNREFUSED"), driverError("CONNECT_TIMEOUT"), postgresError("57014")]) {
      expect(isStaleConnection(error)).toBe(false);
    }
  });
});

describe("translateDatabaseError: what a failure means for the service", () => {
  test("a write refused by a read-only transaction (25006) is a DatabaseReadOnlyError with the cause", () => {
    const refused = postgresError("25006");
    const translated = translateDatabaseError(refused);
    expect(translated).toBeInstanceOf(DatabaseReadOnlyError);
    expect((translated as Error).cause).toBe(refused);
  });

  test("an operational condition is a DatabaseUnavailableError with the cause", () => {
    const timeout = postgresError("57014");
    const translated = translateDatabaseError(timeout);
    expect(translated).toBeInstanceOf(DatabaseUnavailableError);
    expect((translated as Error).cause).toBe(timeout);
  });

  test("a DatabaseUnavailableError and our own statement errors are left as they are", () => {
    const givenUp = new DatabaseUnavailableError("database did not answer in time");
    const taken = postgresError("23505");
    expect(translateDatabaseError(givenUp)).toBe(givenUp);
    expect(translateDatabaseError(taken)).toBe(taken);
  });
});
