import type { DbHolder, Sql } from "../db/db-holder.ts";
import { errorCode, SchemaNotReadyError } from "../db/errors.ts";
import type { SchemaStatus } from "../db/migrate.ts";
import type { WriteAdmission } from "../maintenance/gate.ts";
import type { User, UserInput } from "./users.schemas.ts";

/** Another user already has this email (compared ignoring case). */
export class EmailTakenError extends Error {
  constructor(readonly email: string) {
    super(`email ${email} is already taken`);
    this.name = "EmailTakenError";
  }
}

/** One page of users in id order, and whether more follow. */
export interface UserPage {
  users: User[];
  hasMore: boolean;
}

/**
 * SQL for the users table. Asks the {@link DbHolder} for the current client on
 * every call, so a pool swap applies to the next query; refuses to run before
 * the schema is migrated. Each write asks `writes` (the maintenance gate, or a
 * request's own admission) once its transaction holds a connection, right
 * before the write is sent, so no write starts while writes are refused.
 */
export class UsersRepository {
  constructor(
    private readonly db: DbHolder,
    private readonly schema: SchemaStatus,
    private readonly writes: WriteAdmission,
  ) {}

  /** Users with `id > after`, at most `limit`, by id: a keyset page costing the same at any depth. */
  async list(limit: number, after = 0): Promise<UserPage> {
    this.ensureReady();
    const rows = await this.db.run(
      (sql) => sql<User[]>`
        SELECT id, name, email, created_at, updated_at FROM users
        WHERE id > ${after} ORDER BY id LIMIT ${limit + 1}`,
      { idempotent: true },
    );
    return { users: rows.slice(0, limit), hasMore: rows.length > limit };
  }

  /** The user with `id`, or undefined. */
  async get(id: number): Promise<User | undefined> {
    this.ensureReady();
    const [user] = await this.db.run(
      (sql) => sql<User[]>`SELECT id, name, email, created_at, updated_at FROM users WHERE id = ${id}`,
      { idempotent: true },
    );
    return user;
  }

  /**
   * Runs `work` as one write: a transaction that asks `writes` once it holds
   * a connection (see {@link DbHolder.run}). The statements below run in it.
   */
  async write<T>(work: (sql: Sql) => Promise<T>, writes = this.writes): Promise<T> {
    this.ensureReady();
    return this.db.run(work, { admission: writes });
  }

  /** Inserts a user; throws {@link EmailTakenError} when the email is in use. */
  create(input: UserInput, writes = this.writes): Promise<User> {
    return this.write((sql) => this.insert(sql, input), writes);
  }

  /** Replaces name and email (see {@link UsersRepository.replace}); undefined when there is no such user. */
  update(id: number, input: UserInput, writes = this.writes): Promise<User | undefined> {
    return this.write((sql) => this.replace(sql, id, input), writes);
  }

  /** Deletes a user; false when there was none. */
  delete(id: number, writes = this.writes): Promise<boolean> {
    return this.write((sql) => this.remove(sql, id), writes);
  }

  /** `INSERT` on `sql`, a write's transaction; throws {@link EmailTakenError} when the email is in use. */
  async insert(sql: Sql, input: UserInput): Promise<User> {
    const [user] = await uniqueEmail(
      input.email,
      sql<User[]>`
        INSERT INTO users (name, email) VALUES (${input.name}, ${input.email})
        RETURNING id, name, email, created_at, updated_at`,
    );
    if (!user) throw new Error("INSERT returned no row");
    return user;
  }

  /**
   * `UPDATE` of name and email on `sql`, a write's transaction; undefined when
   * there is no such user. The new `updated_at` is always at least 1 ms after
   * the previous one, since clients see milliseconds and two changes within
   * one must not show the same time.
   */
  async replace(sql: Sql, id: number, input: UserInput): Promise<User | undefined> {
    const [user] = await uniqueEmail(
      input.email,
      // clock_timestamp(), not CURRENT_TIMESTAMP: the time of this change, not of the transaction.
      sql<User[]>`
        UPDATE users SET name = ${input.name}, email = ${input.email},
          updated_at = GREATEST(
            clock_timestamp() AT TIME ZONE 'UTC',
            date_trunc('milliseconds', updated_at) + interval '1 millisecond')
        WHERE id = ${id}
        RETURNING id, name, email, created_at, updated_at`,
    );
    return user;
  }

  /** `DELETE` on `sql`, a write's transaction; false when there was no such user. */
  async remove(sql: Sql, id: number): Promise<boolean> {
    const result = await sql`DELETE FROM users WHERE id = ${id}`;
    return result.count > 0;
  }

  private ensureReady(): void {
    if (!this.schema.ready) throw new SchemaNotReadyError();
  }
}

/** `write`'s result, or {@link EmailTakenError} when it broke the unique email. */
async function uniqueEmail<T>(email: string, write: Promise<T>): Promise<T> {
  try {
    return await write;
  } catch (error) {
    // 23505 unique_violation: users_email_key or users_email_lower_key.
    if (errorCode(error) === "23505") throw new EmailTakenError(email);
    throw error;
  }
}
