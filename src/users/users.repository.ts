import type { DbHolder } from "../db/db-holder.ts";
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

  /** Inserts a user; throws {@link EmailTakenError} when the email is in use. */
  async create(input: UserInput, writes = this.writes): Promise<User> {
    this.ensureReady();
    const [user] = await this.uniqueEmail(input.email, () =>
      this.db.run(
        (sql) => sql<User[]>`
          INSERT INTO users (name, email) VALUES (${input.name}, ${input.email})
          RETURNING id, name, email, created_at, updated_at`,
        { admission: writes },
      ),
    );
    if (!user) throw new Error("INSERT returned no row");
    return user;
  }

  /**
   * Replaces name and email; undefined when there is no such user. The new
   * `updated_at` is always at least 1 ms after the previous one, since clients
   * see milliseconds and two changes within one must not show the same time.
   */
  async update(id: number, input: UserInput, writes = this.writes): Promise<User | undefined> {
    this.ensureReady();
    const [user] = await this.uniqueEmail(input.email, () =>
      this.db.run(
        // clock_timestamp(), not CURRENT_TIMESTAMP: the time of this change, not of the transaction.
        (sql) => sql<User[]>`
          UPDATE users SET name = ${input.name}, email = ${input.email},
            updated_at = GREATEST(
              clock_timestamp() AT TIME ZONE 'UTC',
              date_trunc('milliseconds', updated_at) + interval '1 millisecond')
          WHERE id = ${id}
          RETURNING id, name, email, created_at, updated_at`,
        { admission: writes },
      ),
    );
    return user;
  }

  /** Deletes a user; false when there was none. */
  async delete(id: number, writes = this.writes): Promise<boolean> {
    this.ensureReady();
    const result = await this.db.run((sql) => sql`DELETE FROM users WHERE id = ${id}`, { admission: writes });
    return result.count > 0;
  }

  private ensureReady(): void {
    if (!this.schema.ready) throw new SchemaNotReadyError();
  }

  private async uniqueEmail<T>(email: string, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      // 23505 unique_violation: users_email_key or users_email_lower_key.
      if (errorCode(error) === "23505") throw new EmailTakenError(email);
      throw error;
    }
  }
}
